// Checks web/sdk/visavis.d.ts against the JavaScript it declares (run by `npx tsc -p
// tsconfig.json`): each implementation is assigned to its declared type, so a method, option
// or event the declarations promise and the code lacks (or types differently) fails the build;
// and the declarations are used as a product would use them.
import * as sdk from '../web/sdk/visavis.js'; // resolves to visavis.d.ts
import { Client, connect, socketUrl } from '../web/sdk/client.js';
import { PROTOCOL_VERSION, Signalling, SignallingError } from '../web/sdk/protocol.js';
import { PeerCall } from '../web/sdk/peer.js';
import { CallPeers } from '../web/sdk/peers.js';
import { LocalMedia } from '../web/sdk/local.js';
import { QualityMeter, diagnose, levelWord, qualityLevel, steady } from '../web/sdk/quality.js';
import { listDevices, mediaBlocked, openLocalMedia, openTrack } from '../web/sdk/media.js';
import type { ClientEvents } from '../web/sdk/client.js';

// The implementations fit the declarations.
const implementations: { [K in keyof typeof sdk]: (typeof sdk)[K] } = {
  Client, connect, socketUrl, PROTOCOL_VERSION, Signalling, SignallingError, PeerCall, CallPeers, LocalMedia,
  QualityMeter, diagnose, levelWord, qualityLevel, steady, listDevices, mediaBlocked, openLocalMedia, openTrack,
};
void implementations;

// Every event declared is one the client emits, with the same detail, and no more.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const eventsMatch: Same<keyof ClientEvents, keyof sdk.ClientEvents> = true;
const detailsMatch: { [K in keyof ClientEvents]: Same<ClientEvents[K], sdk.ClientEvents[K]> } = {
  state: true, connection: true, member_joined: true, member_left: true, member_updated: true,
  member_state: true, member_call: true, call_attempt: true, knock: true, knock_ended: true, room_state: true, incoming: true,
  ringing: true, accepted: true, connected: true, call_ended: true, local_stream: true,
  local_media: true, remote_stream: true, remote_screen: true, remote_media: true,
  connection_state: true, quality: true, chat: true, mute_request: true, error: true,
};
void eventsMatch;
void detailsMatch;

// A product's page, written against the declarations alone.
async function productPage(video: HTMLVideoElement): Promise<void> {
  const client: sdk.Client = sdk.connect({ url: 'https://visavis.example', token: 'eyJ…' });
  const stop = client.on('remote_stream', ({ stream }) => { video.srcObject = stream; });
  client.on('incoming', ({ name }) => { if (name) client.accept(); });
  client.on('call_ended', ({ reason }: { reason: sdk.EndReason }) => { stop(); void reason; });
  client.on('error', ({ code, message }) => console.warn(code, message));
  const joined: sdk.JoinResult = await client.join();
  if (joined.state === 'admitted' && joined.members[0]) client.call(joined.members[0].id);
  client.setMicrophoneMuted(true);
  await client.setCameraOff(false);
  await client.shareScreen(false);
  client.sendChat('hello');
  client.on('call_attempt', ({ name }) => console.info(`${name} tried to call you`));
  const busy: number[] = client.inCall;
  void busy;
  const call: sdk.CallInfo | null = client.activeCall;
  if (call?.status === 'connected') client.hangUp();
  client.leave();
}
void productPage;

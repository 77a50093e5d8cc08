// Types of the visavis JavaScript SDK (web/sdk/visavis.js), written by hand and checked against
// the implementation by `npx tsc -p tsconfig.json` (types/sdk-check.ts). Self-contained: a
// product may copy this one file beside its code (served at /sdk/visavis.d.ts).
// docs/sdk.md documents every export and event.

/** Protocol version this SDK speaks (docs/protocol.md). */
export const PROTOCOL_VERSION: number;

/** Someone in a room. `host`: runs a private room (admits, removes, ends it). `publish`: what
 * they may send in calls (from their access token); absent when everything is allowed. */
export interface Member {
  id: number;
  name: string;
  host: boolean;
  publish?: Publish;
}

/** What a member may send in calls. A kind not allowed is never opened by the SDK, refused by
 * the server in `media` states, and not played by the other browsers. */
export interface Publish {
  audio: boolean;
  video: boolean;
  screen: boolean;
}

/** A room's kind and settings. */
export interface RoomState {
  private: boolean;
  lobby: boolean;
  locked: boolean;
  shareHistory: boolean;
}

/** A chat message, stamped by the server (`at`: Unix milliseconds). */
export interface ChatEntry {
  seq: number;
  from: number;
  name: string;
  text: string;
  at: number;
}

/** How 1:1 calls connect while they ring (the server's `--preconnect`, docs/protocol.md):
 * through the TURN relay only until Accept, with every candidate, or not before Accept. */
export type Preconnect = 'relay' | 'direct' | 'off';

/** Why a 1:1 call ended. */
export type EndReason = 'declined' | 'cancelled' | 'no_answer' | 'busy' | 'hangup' | 'left';

/** Why camera or microphone are missing. */
export type MediaProblem = 'denied' | 'no-camera' | 'no-microphone' | 'no-devices' | 'insecure' | 'unsupported';

/** What the others see of someone's media: microphone live, camera on, screen shared. */
export interface MediaState {
  audio: boolean;
  video: boolean;
  screen: boolean;
}

export interface ConnectOptions {
  /** The visavis server (`https://host`) or its WebSocket (`wss://host/ws`); by default the server the SDK was loaded from. */
  url?: string;
  /** The room; with `token`, the token's room. */
  room?: string;
  /** The display name; with `token`, the server takes the token's. */
  name?: string;
  /** An access token from the product's back end (`POST /api/v1/tokens`). */
  token?: string;
  /** A private room's host key: enters as a host. */
  hostKey?: string;
  /** Relay every call through TURN. */
  relayOnly?: boolean;
}

/** Where this client is: `waiting` in a private room's lobby, `admitted` in the room, or out for good. */
export type RoomStatus = 'new' | 'joining' | 'waiting' | 'admitted' | 'denied' | 'removed' | 'room_ended' | 'left';

export interface JoinResult {
  state: 'admitted' | 'waiting';
  room: string;
  you: Member;
  members: Member[];
}

/** The 1:1 call: `ringing` (either way), `accepted` (media connecting), `connected` (media flows). */
export interface CallInfo {
  /** null until the server has numbered an outgoing call */
  id: number | null;
  peer: number;
  peerName: string;
  direction: 'outgoing' | 'incoming';
  status: 'ringing' | 'accepted' | 'connected';
}

/** Every event's `detail`, by event type. */
export interface ClientEvents {
  state: { state: RoomStatus; by?: number };
  connection: { status: 'online' | 'reconnecting' | 'rejoined' };
  member_joined: { member: Member };
  member_left: { member: Member };
  member_updated: { member: Member };
  member_state: { id: number; state: 'online' | 'reconnecting' };
  /** Someone (or we) went into a call, 1:1 or the group's (`inCall: true`), or left it. */
  member_call: { id: number; inCall: boolean };
  /** Someone called us while we were busy in a call (they were told `busy`). */
  call_attempt: { from: number; name: string };
  knock: { member: Member };
  knock_ended: { id: number; outcome: 'admitted' | 'denied' | 'left'; by?: number };
  room_state: RoomState;
  incoming: { callId: number; from: number; name: string };
  ringing: { callId: number; peer: number };
  accepted: { callId: number; peer: number };
  connected: { callId: number; peer: number };
  call_ended: { callId: number | null; peer: number; reason: EndReason; by?: number };
  local_stream: { stream: MediaStream | null };
  local_media: MediaState & { problems: MediaProblem[] };
  remote_stream: { peer: number; stream: MediaStream };
  remote_screen: { peer: number; stream: MediaStream | null };
  /** `unavailable`: their camera or microphone could not be opened (no device, access refused),
   * as opposed to turned off. */
  remote_media: { peer: number; unavailable: { audio: boolean; video: boolean } } & MediaState;
  connection_state: { peer: number; state: RTCPeerConnectionState };
  /** Every 2 s once connected: how the connection to `peer` goes, and its bars (`qualityLevel`). */
  quality: { peer: number; level: 0 | 1 | 2 | 3 | 4 | null; sample: QualitySample };
  chat: ChatEntry & { history: boolean };
  mute_request: { by?: number };
  error: { code: string; message: string; request?: string };
}

/** One person in one room. Events are `CustomEvent`s whose `detail` is `ClientEvents[type]`. */
export class Client extends EventTarget {
  constructor(options: ConnectOptions);
  /** The room (the server's id for it once joined). */
  room: string;
  /** We, once in the room or its lobby. */
  you: Member | null;
  state: RoomStatus;
  roomState: RoomState | null;
  /** A private room's host key, when we are its host. */
  hostKey: string;
  /** Whether this server's 1:1 calls connect while they ring (from `joined`). */
  preconnect: Preconnect;
  /** Our camera and microphone during a call. */
  localStream: MediaStream | null;
  /** The other person's camera and microphone during a call. */
  remoteStream: MediaStream | null;
  /** The other person's shared screen. */
  remoteScreen: MediaStream | null;
  /** The others in the room, in join order. */
  readonly members: Member[];
  /** For hosts: who waits in the lobby. */
  readonly knocks: Member[];
  /** The 1:1 call, ringing or running, or null. */
  readonly activeCall: CallInfo | null;
  /** The ids of the members in a call (1:1 or the group's), us included: who is busy. */
  readonly inCall: number[];

  /** Calls `listener` with each `type` event's detail; returns a function that stops it. */
  on<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): void;

  /** Enters the room; rejects with a SignallingError (`code`: the server's, or `unreachable`). */
  join(): Promise<JoinResult>;
  /** Leaves the room (ending any call) and closes the connection. */
  leave(): void;
  /** Rings a member; `ringing`, then `accepted` or `call_ended` follow. */
  call(memberId: number): void;
  accept(): void;
  decline(): void;
  /** Ends the call; cancels or declines it while it rings. */
  hangUp(): void;
  setMicrophoneMuted(muted: boolean): void;
  setCameraOff(off: boolean): Promise<void>;
  shareScreen(on?: boolean): Promise<void>;
  sendChat(text: string): void;
  /** For hosts. */
  admit(id: number): void;
  deny(id: number): void;
  remove(id: number): void;
  endRoom(): void;
}

/** A client for one person in one room; nothing is sent until `join()`. */
export function connect(options: ConnectOptions): Client;

/** The WebSocket endpoint for a server's address (`https://h` → `wss://h/ws`). */
export function socketUrl(url: string | undefined, base?: string): string;

/** A refusal from the server (`code` as in docs/protocol.md), or `unreachable`. */
export class SignallingError extends Error {
  constructor(code: string, message: string);
  code: string;
}

// ---- building blocks: what `Client` and the visavis web app are made of ---------------------

/** The signalling session: one WebSocket at a time, resumed across drops (docs/protocol.md). */
export class Signalling {
  constructor(url: string);
  url: string;
  room: string;
  hostKey: string;
  join(room: string, name: string, hostKey?: string, accessToken?: string): Promise<{ type: 'joined' | 'waiting'; room: string; you: Member }>;
  create(name: string): Promise<{ type: 'joined' | 'waiting'; room: string; you: Member }>;
  /** Sends a client message of docs/protocol.md, numbered and kept until acknowledged. */
  send(msg: { type: string }): void;
  /** Leaves the room and closes the connection. */
  close(): void;
  shutdown(): void;
}

/** One RTCPeerConnection to one other person (perfect negotiation). */
export class PeerCall {
  constructor(options: {
    polite: boolean;
    iceServers: RTCIceServer[];
    iceTransportPolicy?: RTCIceTransportPolicy;
    signal: (signal: { description: RTCSessionDescriptionInit } | { candidate: RTCIceCandidateInit | null }) => void;
    onRemoteStream: (stream: MediaStream) => void;
    onRemoteScreen?: (stream: MediaStream) => void;
    onConnectionState: (state: RTCPeerConnectionState) => void;
    accepts?: Publish;
  });
  pc: RTCPeerConnection;
  polite: boolean;
  /** Sets the local tracks; the first call starts negotiation (nulls: negotiate, send nothing),
   * a later one puts the tracks on the negotiated transceivers (replaceTrack). */
  start(tracks: { audio: MediaStreamTrack | null; video: MediaStreamTrack | null }): void;
  /** After a relay-only pre-connect: every candidate from now on (`restart` false), then, once
   * the tracks are on, an ICE restart from the side that offers (`restart` true). */
  openPath(restart: boolean): void;
  handle(signal: { description: RTCSessionDescriptionInit } | { candidate: RTCIceCandidateInit | null }): Promise<void>;
  replaceTrack(kind: 'audio' | 'video', track: MediaStreamTrack | null): Promise<void>;
  shareScreen(track: MediaStreamTrack | null): Promise<void>;
  setIceServers(iceServers: RTCIceServer[]): void;
  close(): void;
}

/** What a call tells its owner, each about the participant `id`. */
export interface CallPeersEvents {
  remoteStream: (id: number, stream: MediaStream) => void;
  remoteScreen: (id: number, stream: MediaStream) => void;
  remoteMedia: (id: number, state: MediaState) => void;
  connectionState: (id: number, state: RTCPeerConnectionState) => void;
  localChange: () => void;
  /** A new sample of the connection to `id`, every 2 s once it is up. */
  quality?: (id: number, sample: QualitySample) => void;
}

/** One call's media (a 1:1 call, or a group call's full mesh): local media, a PeerCall per participant, the call's signalling. */
export class CallPeers {
  constructor(options: {
    callId: number;
    mode: 'direct' | 'group';
    iceServers: RTCIceServer[];
    iceTransportPolicy?: RTCIceTransportPolicy;
    /** Null (or absent) for a call that rings: the peers negotiate without tracks until `accept`. */
    media?: Promise<OpenedMedia> | null;
    start?: { muted?: boolean; cameraOff?: boolean };
    send: (msg: { type: string }) => void;
    /** None are told before the call is accepted. */
    events?: CallPeersEvents;
    /** On `accept`, allow every ICE candidate and restart ICE (after a relay-only pre-connect). */
    openPath?: boolean;
  });
  callId: number;
  /** False while the call rings (pre-connected, no media). */
  accepted: boolean;
  /** The call is accepted: our media onto the peers (replaceTrack), and `events` told what the peers have. */
  accept(options: { media: Promise<OpenedMedia>; start?: { muted?: boolean; cameraOff?: boolean }; events?: CallPeersEvents }): void;
  peers: Map<number, PeerCall>;
  local: LocalMedia | null;
  /** One meter per connection, by the other participant's id, from when it is first up. */
  meters: Map<number, QualityMeter>;
  /** The 1:1 call's meter; its summary is sent as `call_quality` at close. */
  quality: QualityMeter | null;
  ready: Promise<void>;
  addPeer(id: number, polite: boolean, accepts?: Publish): PeerCall;
  removePeer(id: number): void;
  /** A `description`, `candidate` or `media` message of this call; false for any other. */
  handle(msg: { type: string }): boolean;
  announce(): void;
  setIceServers(iceServers: RTCIceServer[]): void;
  close(): void;
}

/** How a call's media went, as sent in `call_quality` (docs/protocol.md). */
export interface QualityReport {
  path: 'host' | 'srflx' | 'prflx' | 'relay';
  transport: 'udp' | 'tcp' | 'tls';
  rttAvgMs: number;
  rttMaxMs: number;
  lossAvgPermille: number;
  lossMaxPermille: number;
  freezes: number;
}

/** One sample of a connection, over the last interval (2 s). */
export interface QualitySample {
  /** When it was taken (`Date.now()`). */
  at: number;
  rttMs: number | null;
  /** Received packets lost in the interval, all kinds together. */
  lossPermille: number;
  /** Of the packets sent, the share the other side reported lost (worst kind); null before a report. */
  outLossPermille: number | null;
  jitterMs: number | null;
  inKbps: number;
  outKbps: number;
  /** The sender's bandwidth estimate for the path. */
  availableOutKbps: number | null;
  /** Received video (the largest stream). */
  width: number | null;
  height: number | null;
  fps: number | null;
  freezes: number;
  path: QualityReport['path'] | null;
  transport: QualityReport['transport'] | null;
}

/** Bars for a sample: 0 (unusable) to 4 (excellent), from RTT, loss either way and jitter; null while unknown. */
export function qualityLevel(sample: QualitySample | null | undefined): 0 | 1 | 2 | 3 | 4 | null;
/** The latest sample with RTT, loss, jitter and bandwidth estimate as the median of the last `n` (default 3): what bars and warnings should show. */
export function steady(samples: QualitySample[], n?: number): QualitySample | null;
/** The word for a level: 3–4 good, 2 fair, 0–1 poor. */
export function levelWord(level: number | null): 'good' | 'fair' | 'poor' | 'unknown';
/** From the latest sample of each connection: whether one's own network is the trouble, else whose connections are poor. */
export function diagnose<K>(latest: Map<K, QualitySample | null | undefined>): { own: boolean; poor: K[] };

/** Samples one peer connection's `getStats` every two seconds. */
export class QualityMeter {
  constructor(pc: RTCPeerConnection, onSample?: (sample: QualitySample) => void);
  /** The last minute's samples, oldest first. */
  samples: QualitySample[];
  readonly latest: QualitySample | null;
  sample(): Promise<QualitySample | undefined>;
  /** The summary of the samples so far; null if none saw a selected candidate pair. */
  summary(): QualityReport | null;
  stop(): void;
}

/** Opened camera and microphone, and what is missing. */
export interface OpenedMedia {
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
  problems: MediaProblem[];
}

/** This person's media in a call, applied to every peer connection of the call. */
export class LocalMedia {
  constructor(opened: OpenedMedia, onchange: () => void);
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
  screen: MediaStreamTrack | null;
  audioEnabled: boolean;
  problems: MediaProblem[];
  state(): MediaState;
  attach(peer: PeerCall): void;
  detach(peer: PeerCall): void;
  toggleMute(): void;
  toggleVideo(deviceId?: string): Promise<void>;
  switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void>;
  toggleScreen(): Promise<void>;
  stop(): void;
}

/** Opens camera and microphone, falling back to whichever works; never rejects. */
export function openLocalMedia(prefs?: { audioInput?: string; videoInput?: string; publish?: Publish }): Promise<OpenedMedia>;
/** Opens one device; `track` is null when there is none or it is refused. */
export function openTrack(kind: 'audio' | 'video', deviceId?: string): Promise<{ track: MediaStreamTrack | null; error?: string }>;
export function listDevices(): Promise<{ cameras: MediaDeviceInfo[]; microphones: MediaDeviceInfo[]; speakers: MediaDeviceInfo[] }>;
/** Why this page can never open a camera or microphone (`insecure`, `unsupported`), or null. */
export function mediaBlocked(): 'insecure' | 'unsupported' | null;

// @ts-check
//! The visavis JavaScript SDK, one ES module (no build step): `connect` gives a client for one
//! person in one room (members, 1:1 calls, chat, the lobby, media controls, the streams for a
//! product's own <video> elements). The building blocks it is made of, and the web app runs on,
//! are exported too: the signalling session, the peer connection, local media, the quality meter
//! and the functions that grade its samples.
//! Served by visavis at /sdk/visavis.js (with CORS, so pages on other origins can import it);
//! its types are in visavis.d.ts beside it; docs/sdk.md documents it.

export { Client, connect, socketUrl } from './client.js';
export { PROTOCOL_VERSION, Signalling, SignallingError } from './protocol.js';
export { PeerCall } from './peer.js';
export { CallPeers } from './peers.js';
export { QualityMeter, diagnose, levelWord, qualityLevel, steady } from './quality.js';
export { LocalMedia } from './local.js';
export { listDevices, mediaBlocked, openLocalMedia, openTrack } from './media.js';

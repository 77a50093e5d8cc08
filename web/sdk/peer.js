// @ts-check
//! One RTCPeerConnection to one other person: perfect negotiation, trickle ICE with buffered
//! candidates, a main audio and video transceiver pair, and an optional screen-share
//! transceiver. Touches no DOM.
//!
//! The impolite side creates the main transceivers as sendrecv, with or without a local
//! track, and offers. The polite side attaches its tracks to the transceivers the offer
//! created. So there are always exactly two main m-lines, media flows one way when one side
//! has no camera or microphone, and devices are switched with replaceTrack, no renegotiation.
//! A shared screen is one more video transceiver (sendonly from the sharer), added and
//! stopped through renegotiation, which perfect negotiation makes safe from either side.
//!
//! A call that pre-connects while it rings starts with no tracks at all (`start` with nulls:
//! the transceivers are negotiated, ICE and DTLS complete, nothing is sent); the second
//! `start`, on Accept, puts the tracks on the negotiated transceivers with replaceTrack, at once.
//! The caller's camera is open while it rings: `prime` puts its tracks on beforehand with
//! every encoding inactive (nothing is sent), so that on Accept they are only switched on.

/**
 * @typedef {'audio' | 'video'} Kind
 * @typedef {{audio: MediaStreamTrack | null, video: MediaStreamTrack | null}} LocalTracks
 * @typedef {{description: RTCSessionDescriptionInit} | {candidate: RTCIceCandidateInit | null}} Signal
 */

/** How long `disconnected` may last before we restart ICE. */
const ICE_DISCONNECTED_GRACE_MS = 3000;
/** A restart that has not healed the connection by then is tried again. */
const ICE_RETRY_MS = 8000;

/**
 * Turns every encoding of `sender` on or off (off: it sends nothing, track or not).
 * @param {RTCRtpSender} sender
 * @param {boolean} active
 */
async function setActive(sender, active) {
  const params = sender.getParameters();
  if (!params.encodings?.length || params.encodings.every((e) => e.active === active)) return;
  for (const encoding of params.encodings) encoding.active = active;
  await sender.setParameters(params);
}

/**
 * The estimate a connection's bandwidth starts from, in kbit/s, for what we send. Chromium's
 * default (300) is below what its encoder wants for a VGA camera, so the first frames of a call
 * are dropped while the encoder steps down to 320×240 (~150 ms, a frame interval per step).
 * The estimator corrects a start that is too high within a second, as it does for its probes.
 */
const START_BITRATE_KBPS = 1000;

/**
 * `description` with our start bitrate on every video codec: Chromium takes it for what it sends
 * from the other side's description (`x-google-start-bitrate`, ignored by other browsers).
 * @param {RTCSessionDescriptionInit} description
 * @returns {RTCSessionDescriptionInit}
 */
function withStartBitrate(description) {
  if (!description.sdp) return description;
  const lines = description.sdp.split('\r\n');
  /** Payload types of video codecs (not rtx, red, ulpfec), and of those with a fmtp line. */
  const codecs = new Set();
  const withFmtp = new Set();
  for (const line of lines) {
    const codec = /^a=rtpmap:(\d+) (VP8|VP9|H264|H265|AV1)\//i.exec(line);
    if (codec) codecs.add(codec[1]);
    const fmtp = /^a=fmtp:(\d+) /.exec(line);
    if (fmtp) withFmtp.add(fmtp[1]);
  }
  const start = `x-google-start-bitrate=${START_BITRATE_KBPS}`;
  const sdp = lines.flatMap((line) => {
    if (line.includes('x-google-start-bitrate')) return [line];
    const codec = /^a=rtpmap:(\d+) /.exec(line)?.[1];
    if (codec && codecs.has(codec) && !withFmtp.has(codec)) return [line, `a=fmtp:${codec} ${start}`];
    const fmtp = /^a=fmtp:(\d+) /.exec(line)?.[1];
    return [fmtp && codecs.has(fmtp) ? `${line};${start}` : line];
  }).join('\r\n');
  return { type: description.type, sdp };
}

export class PeerCall {
  /**
   * @param {object} options
   * @param {boolean} options.polite the perfect-negotiation role (given by the server, or by
   *   member ids in a group call)
   * @param {RTCIceServer[]} options.iceServers
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]
   * @param {(signal: Signal) => void} options.signal sends to the other side through the server
   * @param {(stream: MediaStream) => void} options.onRemoteStream the camera and microphone tracks
   * @param {(stream: MediaStream) => void} [options.onRemoteScreen] the shared-screen track
   * @param {(state: RTCPeerConnectionState) => void} options.onConnectionState
   * @param {import('./protocol.js').Publish} [options.accepts] what the other side may send
   *   (from the server's member list): a track of another kind is never played, whatever that
   *   browser sends, since the media goes past the server
   */
  constructor({ polite, iceServers, iceTransportPolicy = 'all', signal, onRemoteStream, onRemoteScreen, onConnectionState, accepts }) {
    this.polite = polite;
    this.accepts = accepts ?? { audio: true, video: true, screen: true };
    this.signal = signal;
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy });
    this.remoteStream = new MediaStream();
    this.screenStream = new MediaStream();
    this.makingOffer = false;
    this.ignoreOffer = false;
    /** Candidates that arrived before the remote description. @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    /** @type {LocalTracks} */
    this.local = { audio: null, video: null };
    /** @type {RTCRtpTransceiver | null} our screen-share transceiver, kept for reuse */
    this.screenTransceiver = null;
    /** @type {() => void} */
    this.resolveLocal = () => {};
    /** Resolved once local media is known; the polite side answers only after that. @type {Promise<void>} */
    this.localReady = new Promise((resolve) => (this.resolveLocal = resolve));
    /** Incoming signals run one at a time, in arrival order. */
    this.queue = Promise.resolve();
    /** ICE restarts this side started. */
    this.iceRestarts = 0;
    /** `start` ran: the main transceivers exist (impolite) or the answer may go (polite). */
    this.started = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.iceTimer = undefined;
    /** `prime` ran: the main senders' encodings are off until the second `start`. */
    this.primed = false;
    /** `prime`'s work, which `start`'s must follow. @type {Promise<unknown>} */
    this.priming = Promise.resolve();

    this.pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await this.pc.setLocalDescription();
        if (this.pc.localDescription) this.signal({ description: this.pc.localDescription.toJSON() });
      } catch (err) {
        console.warn('negotiation failed', err);
      } finally {
        this.makingOffer = false;
      }
    };
    this.pc.onicecandidate = ({ candidate }) => this.signal({ candidate: candidate ? candidate.toJSON() : null });
    this.pc.ontrack = ({ track, transceiver }) => {
      const main = this.isMain(transceiver);
      if (!(main ? this.accepts[/** @type {'audio' | 'video'} */ (track.kind)] : this.accepts.screen)) {
        track.stop();
        return;
      }
      if (main) {
        this.remoteStream.addTrack(track);
        onRemoteStream(this.remoteStream);
      } else {
        for (const old of this.screenStream.getTracks()) this.screenStream.removeTrack(old);
        this.screenStream.addTrack(track);
        onRemoteScreen?.(this.screenStream);
      }
    };
    this.pc.onconnectionstatechange = () => onConnectionState(this.pc.connectionState);
    this.pc.oniceconnectionstatechange = () => this.watchIce();
  }

  /**
   * Restarts ICE when the path breaks: at once on `failed`, after a few seconds of
   * `disconnected` (which often heals by itself). Only the impolite side restarts: it is the
   * one that offers, so a restart never collides with one from the other side (a polite
   * rollback in the middle of an ICE restart was seen to leave Chromium's remote video frozen).
   * Both sides watch the same connectivity checks, so the impolite side always notices.
   */
  watchIce() {
    clearTimeout(this.iceTimer);
    const state = this.pc.iceConnectionState;
    if (this.polite || (state !== 'failed' && state !== 'disconnected')) return;
    this.iceTimer = setTimeout(() => {
      const now = this.pc.iceConnectionState;
      if (now === 'failed' || now === 'disconnected') {
        this.iceRestarts += 1;
        this.pc.restartIce();
        // If this restart does not get through either, try again.
        this.iceTimer = setTimeout(() => this.watchIce(), ICE_RETRY_MS);
      }
    }, state === 'failed' ? 0 : ICE_DISCONNECTED_GRACE_MS);
  }

  /**
   * The main transceivers are the first audio and the first video one, in m-line order.
   * @param {RTCRtpTransceiver} transceiver
   */
  isMain(transceiver) {
    const kind = transceiver.receiver.track.kind;
    return this.pc.getTransceivers().find((t) => t.receiver.track.kind === kind) === transceiver;
  }

  /** @param {Kind} kind */
  main(kind) {
    return this.pc.getTransceivers().find((t) => t.receiver.track.kind === kind) ?? null;
  }

  /**
   * Sets the local tracks (either may be null: receive-only for that kind). The first call
   * starts negotiation: the impolite side creates the transceivers, the polite side may answer.
   * A later call (the camera and microphone of a call that pre-connected while it rang) puts
   * the tracks on the negotiated transceivers, without renegotiation.
   * @param {LocalTracks} tracks
   */
  start(tracks) {
    this.local = { ...tracks };
    if (this.started) {
      // At once, not behind the signals in `queue` (an ICE restart's offer and answer, say):
      // the negotiated transceivers take a track without renegotiation. An offer being answered
      // meanwhile cannot miss the tracks either: `apply` attaches `this.local` again.
      this.attachLocalTracks(this.primed).catch((err) => console.warn('tracks failed', err));
      this.primed = false;
      return;
    }
    this.started = true;
    if (!this.polite) {
      for (const kind of /** @type {Kind[]} */ (['audio', 'video'])) {
        this.pc.addTransceiver(tracks[kind] ?? kind, { direction: 'sendrecv' });
      }
    }
    this.resolveLocal();
  }

  /**
   * After a call that pre-connected through the relay only is accepted: every candidate from
   * now on (`restart` false), then (`restart` true, from the side that offers) an ICE restart,
   * so ICE may find a direct path. The relayed path carries the media until then.
   * @param {boolean} restart
   */
  openPath(restart) {
    if (this.pc.signalingState === 'closed') return;
    if (!restart) this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceTransportPolicy: 'all' });
    else if (!this.polite) this.pc.restartIce();
  }

  /**
   * A signal relayed from the other side.
   * @param {Signal} signal
   * @returns {Promise<void>}
   */
  handle(signal) {
    this.queue = this.queue.then(() => this.apply(signal)).catch((err) => console.warn('signal failed', err));
    return this.queue;
  }

  /** @param {Signal} signal */
  async apply(signal) {
    if ('description' in signal) {
      const description = signal.description;
      const collision = description.type === 'offer' && (this.makingOffer || this.pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await this.pc.setRemoteDescription(withStartBitrate(description)); // rolls back our own offer if polite
      if (description.type === 'offer') {
        await this.localReady;
        await this.attachLocalTracks();
        await this.pc.setLocalDescription();
        if (this.pc.localDescription) this.signal({ description: this.pc.localDescription.toJSON() });
      }
      for (const candidate of this.pendingCandidates.splice(0)) await this.addCandidate(candidate);
    } else if (!this.pc.remoteDescription) {
      if (signal.candidate) this.pendingCandidates.push(signal.candidate);
    } else {
      await this.addCandidate(signal.candidate);
    }
  }

  /** @param {RTCIceCandidateInit | null} candidate */
  async addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate ?? undefined);
    } catch (err) {
      if (!this.ignoreOffer) throw err;
    }
  }

  /**
   * While the call rings, before `start` gives them for real: puts the tracks on the main
   * transceivers with every encoding inactive, so nothing is sent, and the Accept that follows
   * only switches them on (the encoder's start no longer waits for the Accept). Only the
   * impolite side (the caller) has its transceivers before the offer.
   * @param {LocalTracks} tracks
   */
  prime(tracks) {
    if (this.polite || !this.started || this.local.audio || this.local.video) return;
    this.primed = true;
    this.priming = Promise.all(/** @type {Kind[]} */ (['video', 'audio']).map(async (kind) => {
      const sender = this.main(kind)?.sender;
      if (!sender || !tracks[kind]) return;
      await setActive(sender, false);
      await sender.replaceTrack(tracks[kind]);
    })).catch((err) => console.warn('priming failed', err));
  }

  /**
   * Puts our tracks on the main transceivers (the ones the offer created, on the polite side).
   * @param {boolean} [activate] switch on the encodings `prime` turned off
   */
  async attachLocalTracks(activate = false) {
    if (this.primed && !activate) return; // an offer answered while it rings: the primed tracks stay
    await this.priming;
    // Both at once, video first: each waits its turn on the connection's chain of operations,
    // and the video, whose encoder takes longest to start, should not wait behind the audio.
    await Promise.all(/** @type {Kind[]} */ (['video', 'audio']).map(async (kind) => {
      const transceiver = this.main(kind);
      if (!transceiver || transceiver.direction === 'stopped') return;
      // sendrecv even without a track, so a camera started later needs no renegotiation.
      transceiver.direction = 'sendrecv';
      const sender = transceiver.sender;
      await Promise.all([
        sender.track === this.local[kind] ? undefined : sender.replaceTrack(this.local[kind]),
        activate ? setActive(sender, true) : undefined,
      ]);
    }));
  }

  /**
   * Sends `track` (or nothing) for `kind` from now on, without renegotiation.
   * @param {Kind} kind
   * @param {MediaStreamTrack | null} track
   */
  async replaceTrack(kind, track) {
    this.local[kind] = track;
    const transceiver = this.main(kind);
    if (transceiver) await transceiver.sender.replaceTrack(track);
  }

  /**
   * Starts (a track) or stops (null) sending a shared screen; renegotiates.
   * @param {MediaStreamTrack | null} track
   */
  async shareScreen(track) {
    if (track) {
      if (this.screenTransceiver && this.screenTransceiver.direction !== 'stopped') {
        await this.screenTransceiver.sender.replaceTrack(track);
        this.screenTransceiver.direction = 'sendonly';
      } else {
        this.screenTransceiver = this.pc.addTransceiver(track, { direction: 'sendonly' });
      }
    } else if (this.screenTransceiver) {
      await this.screenTransceiver.sender.replaceTrack(null);
      this.screenTransceiver.direction = 'inactive';
    }
  }

  /**
   * New TURN credentials: the connection keeps its relays (the server refreshes them while we
   * stay); an ICE restart later allocates new ones with these.
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    if (this.pc.signalingState === 'closed') return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
  }

  close() {
    clearTimeout(this.iceTimer);
    this.pc.oniceconnectionstatechange = null;
    this.pc.onnegotiationneeded = null;
    this.pc.onicecandidate = null;
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
  }
}

// @ts-check
//! Local camera and microphone: opening them with fallbacks, listing devices. Touches no DOM.

/**
 * @typedef {{audio: MediaStreamTrack | null, video: MediaStreamTrack | null,
 *            problems: MediaProblem[]}} LocalMedia
 * @typedef {'denied' | 'no-camera' | 'no-microphone' | 'no-devices' | 'insecure' | 'unsupported'} MediaProblem
 * `publish`: what this person may send (an access token's permissions); a kind not allowed is
 * never opened, so the camera light stays off.
 * @typedef {{audioInput?: string, videoInput?: string, publish?: import('./protocol.js').Publish}} DevicePrefs
 * @typedef {{cameras: MediaDeviceInfo[], microphones: MediaDeviceInfo[], speakers: MediaDeviceInfo[]}} DeviceLists
 */

/**
 * Why this page can never open a camera or microphone, or null when it may: browsers give
 * them only to secure contexts (https://, or localhost), and some give them to none.
 * @returns {'insecure' | 'unsupported' | null}
 */
export function mediaBlocked() {
  if (!window.isSecureContext) return 'insecure';
  if (!navigator.mediaDevices?.getUserMedia) return 'unsupported';
  return null;
}

/** This page's address over https: where the camera and microphone would work. */
export function secureUrl() {
  return `https://${location.host}${location.pathname}${location.search}${location.hash}`;
}

/**
 * @param {'audio' | 'video'} kind
 * @param {string | undefined} deviceId
 * @returns {boolean | MediaTrackConstraints}
 */
function constraint(kind, deviceId) {
  if (kind === 'video') return deviceId ? { deviceId: { exact: deviceId }, width: 640, height: 480 } : { width: 640, height: 480 };
  return deviceId ? { deviceId: { exact: deviceId } } : true;
}

/**
 * Opens one device of `kind`; null when there is none or it is refused.
 * @param {'audio' | 'video'} kind
 * @param {string} [deviceId]
 * @returns {Promise<{track: MediaStreamTrack | null, error?: string}>}
 */
export async function openTrack(kind, deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) return { track: null, error: 'NotSupportedError' };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraint(kind, deviceId) });
    return { track: stream.getTracks()[0] ?? null };
  } catch (err) {
    return { track: null, error: err instanceof Error ? err.name : String(err) };
  }
}

/**
 * Opens camera and microphone, falling back to whichever exists and is allowed, so a call
 * can go ahead audio-only, video-only or receive-only. Never rejects.
 * @param {DevicePrefs} [prefs]
 * @returns {Promise<LocalMedia>}
 */
export async function openLocalMedia(prefs = {}) {
  // Not "no devices": there may well be some, the page just may not use them.
  const blocked = mediaBlocked();
  if (blocked) return { audio: null, video: null, problems: [blocked] };
  /** @type {MediaProblem[]} */
  const problems = [];
  const wantAudio = prefs.publish?.audio ?? true;
  const wantVideo = prefs.publish?.video ?? true;
  if (!wantAudio && !wantVideo) return { audio: null, video: null, problems };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: wantAudio && constraint('audio', prefs.audioInput),
      video: wantVideo && constraint('video', prefs.videoInput),
    });
    return { audio: stream.getAudioTracks()[0] ?? null, video: stream.getVideoTracks()[0] ?? null, problems };
  } catch {
    // Fall through: find out which of the two is missing or refused.
  }
  /** @type {{track: MediaStreamTrack | null, error?: string}} */
  const skipped = { track: null };
  const [audio, video] = await Promise.all([
    wantAudio ? openTrack('audio', prefs.audioInput) : skipped,
    wantVideo ? openTrack('video', prefs.videoInput) : skipped,
  ]);
  const denied = [audio.error, video.error].some((e) => e === 'NotAllowedError' || e === 'SecurityError');
  if (denied) problems.push('denied');
  else if (!audio.track && !video.track) problems.push(wantAudio && wantVideo ? 'no-devices' : wantVideo ? 'no-camera' : 'no-microphone');
  else {
    if (wantVideo && !video.track) problems.push('no-camera');
    if (wantAudio && !audio.track) problems.push('no-microphone');
  }
  return { audio: audio.track, video: video.track, problems };
}

/** @returns {Promise<DeviceLists>} */
export async function listDevices() {
  const devices = navigator.mediaDevices?.enumerateDevices ? await navigator.mediaDevices.enumerateDevices() : [];
  return {
    cameras: devices.filter((d) => d.kind === 'videoinput'),
    microphones: devices.filter((d) => d.kind === 'audioinput'),
    speakers: devices.filter((d) => d.kind === 'audiooutput'),
  };
}

// @ts-check
//! User-facing text in English and Simplified Chinese; the language comes from the browser
//! unless the person picked one with the switch (remembered in localStorage).

/** @typedef {'en' | 'zh-CN'} Lang */

const en = {
  tagline: 'Video calls in your browser',
  language: 'Language',
  yourName: 'Your name',
  room: 'Room',
  join: 'Join',
  joining: 'Joining…',
  leave: 'Leave room',
  you: 'You are {name}',
  roomTitle: 'Room {room}',
  shareLink: 'Share this link to invite someone:',
  members: 'People in this room',
  nobodyElse: 'Nobody else is here yet. Share the link above.',
  callName: 'Call {name}',
  callingName: 'Calling {name}…',
  cancel: 'Cancel',
  incomingFrom: '{name} is calling you',
  accept: 'Accept',
  decline: 'Decline',
  callWith: 'Call with {name}',
  mute: 'Mute',
  unmute: 'Unmute',
  stopVideo: 'Stop video',
  startVideo: 'Start video',
  hangUp: 'Hang up',
  groupCall: 'Group call',
  joinCall: 'Join call',
  leaveCall: 'Leave call',
  callRunning: 'Call in progress: {names}',
  noCallRunning: 'No group call yet. Start one with "Join call".',
  shareScreen: 'Share screen',
  stopSharing: 'Stop sharing',
  screenOf: "{name}'s screen",
  pin: 'Pin {name}',
  unpin: 'Unpin {name}',
  chat: 'Chat',
  chatUnread: 'Chat ({count} unread)',
  message: 'Message',
  send: 'Send',
  chatEmpty: 'No messages yet.',
  'err.call_full': 'The group call is full. Wait until someone leaves.',
  'err.invalid_chat': 'That message is too long (at most 4 KiB) or empty.',
  camera: 'Camera',
  microphone: 'Microphone',
  speaker: 'Speaker',
  defaultDevice: 'Default',
  noneDevice: 'None',
  youSuffix: '{name} (you)',
  cameraOff: '{name}: camera off',
  yourCameraOff: 'Your camera is off',
  isMuted: '{name} is muted',
  duration: 'Duration',
  'state.new': 'Connecting…',
  'state.connecting': 'Connecting…',
  'state.connected': 'Connected',
  'state.disconnected': 'Reconnecting…',
  'state.failed': 'Reconnecting…',
  reconnectingServer: 'Connection to the server lost — reconnecting…',
  reconnectingSuffix: '(reconnecting…)',
  rejoinedCallEnded: 'The connection to the server was lost for too long (or the server restarted): you are back in the room, but the call ended. Call again.',
  'state.closed': 'Closed',
  'ended.declined': '{name} declined the call.',
  'ended.declinedByYou': 'You declined the call from {name}.',
  'ended.cancelled': '{name} cancelled the call.',
  'ended.cancelledByYou': 'Call cancelled.',
  'ended.no_answer': '{name} did not answer.',
  'ended.missed': 'You missed a call from {name}.',
  'ended.busy': '{name} is busy in another call.',
  'ended.hangup': '{name} hung up.',
  'ended.hangupByYou': 'Call ended.',
  'ended.left': '{name} left the room; the call ended.',
  'err.room_full': 'This room is full. Try another room or ask someone to leave.',
  'err.invalid_name': 'Please enter a name of 1 to 64 characters.',
  'err.invalid_room': 'Room names may use letters, digits, "-", "_" and "." (up to 64).',
  'err.unreachable': 'Cannot reach the visavis server. Check your connection and try again.',
  'err.closed': 'The connection to the server was lost.',
  'err.generic': 'Something went wrong: {message}',
  'err.rate_limited': 'Too many attempts in a short time. Please wait a moment and try again.',
  'media.denied': 'Camera and microphone access was denied. You can still see and hear the other person; allow access in the browser to be seen and heard.',
  'media.no-devices': 'No camera or microphone found. You can still see and hear the other person.',
  'media.no-camera': 'No camera found: this is an audio-only call from your side.',
  'media.no-microphone': 'No microphone found: the other person will not hear you.',
  insecure: 'Camera and microphone need a secure connection: open {url} — calls are off on this http:// page; chat still works. If that link does not open, the server must first be set up to serve HTTPS (see docs/deploy.md).',
  'media.insecure': 'Camera and microphone need a secure connection: this page was opened over http://, so the other person can neither see nor hear you.',
  'media.unsupported': 'This browser gives the page no camera or microphone. You can still see and hear the other person.',
};

/** @type {Record<keyof typeof en, string>} */
const zh = {
  tagline: '在浏览器里视频通话',
  language: '语言',
  yourName: '你的名字',
  room: '房间',
  join: '加入',
  joining: '正在加入…',
  leave: '离开房间',
  you: '你是 {name}',
  roomTitle: '房间 {room}',
  shareLink: '分享此链接邀请他人：',
  members: '房间里的人',
  nobodyElse: '还没有其他人。请分享上面的链接。',
  callName: '呼叫 {name}',
  callingName: '正在呼叫 {name}…',
  cancel: '取消',
  incomingFrom: '{name} 正在呼叫你',
  accept: '接听',
  decline: '拒绝',
  callWith: '与 {name} 通话',
  mute: '静音',
  unmute: '取消静音',
  stopVideo: '关闭视频',
  startVideo: '开启视频',
  hangUp: '挂断',
  groupCall: '群组通话',
  joinCall: '加入通话',
  leaveCall: '离开通话',
  callRunning: '通话进行中：{names}',
  noCallRunning: '还没有群组通话。点击“加入通话”开始。',
  shareScreen: '共享屏幕',
  stopSharing: '停止共享',
  screenOf: '{name} 的屏幕',
  pin: '置顶 {name}',
  unpin: '取消置顶 {name}',
  chat: '聊天',
  chatUnread: '聊天（{count} 条未读）',
  message: '消息',
  send: '发送',
  chatEmpty: '还没有消息。',
  'err.call_full': '群组通话已满。请等待有人离开。',
  'err.invalid_chat': '消息过长（最多 4 KiB）或为空。',
  camera: '摄像头',
  microphone: '麦克风',
  speaker: '扬声器',
  defaultDevice: '默认',
  noneDevice: '无',
  youSuffix: '{name}（你）',
  cameraOff: '{name}：摄像头已关闭',
  yourCameraOff: '你的摄像头已关闭',
  isMuted: '{name} 已静音',
  duration: '时长',
  'state.new': '正在连接…',
  'state.connecting': '正在连接…',
  'state.connected': '已连接',
  'state.disconnected': '正在重新连接…',
  'state.failed': '正在重新连接…',
  reconnectingServer: '与服务器的连接已断开，正在重新连接…',
  reconnectingSuffix: '（正在重新连接…）',
  rejoinedCallEnded: '与服务器的连接中断过久（或服务器已重启）：你已回到房间，但通话已结束。请重新呼叫。',
  'state.closed': '已关闭',
  'ended.declined': '{name} 拒绝了通话。',
  'ended.declinedByYou': '你拒绝了 {name} 的来电。',
  'ended.cancelled': '{name} 取消了通话。',
  'ended.cancelledByYou': '已取消呼叫。',
  'ended.no_answer': '{name} 无人接听。',
  'ended.missed': '你错过了 {name} 的来电。',
  'ended.busy': '{name} 正在另一个通话中。',
  'ended.hangup': '{name} 已挂断。',
  'ended.hangupByYou': '通话已结束。',
  'ended.left': '{name} 离开了房间，通话结束。',
  'err.room_full': '房间已满。请换一个房间，或请他人离开。',
  'err.invalid_name': '请输入 1 到 64 个字符的名字。',
  'err.invalid_room': '房间名只能包含字母、数字、“-”、“_”和“.”（最多 64 个）。',
  'err.unreachable': '无法连接 visavis 服务器。请检查网络后重试。',
  'err.closed': '与服务器的连接已断开。',
  'err.generic': '出错了：{message}',
  'err.rate_limited': '操作过于频繁，请稍候再试。',
  'media.denied': '摄像头和麦克风权限被拒绝。你仍可看到并听到对方；在浏览器中允许访问后对方才能看到、听到你。',
  'media.no-devices': '未找到摄像头或麦克风。你仍可看到并听到对方。',
  'media.no-camera': '未找到摄像头：你这边是纯语音通话。',
  'media.no-microphone': '未找到麦克风：对方听不到你。',
  insecure: '摄像头和麦克风需要安全连接：请打开 {url} —— 在此 http:// 页面上无法通话，聊天仍可使用。如果该链接打不开，需要先让服务器提供 HTTPS（见 docs/deploy.md）。',
  'media.insecure': '摄像头和麦克风需要安全连接：此页面是通过 http:// 打开的，对方看不到也听不到你。',
  'media.unsupported': '此浏览器不让页面使用摄像头或麦克风。你仍可看到并听到对方。',
};

/** @typedef {keyof typeof en} Key */

const tables = { en, 'zh-CN': zh };
const STORAGE_KEY = 'visavis.lang';

/** @returns {Lang} */
function initialLang() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved === 'en' || saved === 'zh-CN') return saved;
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language];
  return preferred.some((l) => l.toLowerCase().startsWith('zh')) ? 'zh-CN' : 'en';
}

/** @type {Lang} */
let lang = initialLang();

export function currentLang() {
  return lang;
}

/** @param {Lang} next */
export function setLang(next) {
  lang = next;
  localStorage.setItem(STORAGE_KEY, next);
}

/**
 * The text for `key` in the current language, with `{param}` placeholders filled in.
 * Returns plain text: callers put it into the page with textContent, never as HTML.
 * @param {Key} key
 * @param {Record<string, string | number>} [params]
 */
export function t(key, params = {}) {
  const template = tables[lang][key] ?? en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? `{${name}}`));
}

// @ts-check
//! The connectivity lab's networks: a "public" network namespace holding visavis (web, signalling,
//! STUN/TURN) and, per client, a router namespace (NAT and firewall of one kind, with nftables)
//! and a client namespace behind it where one Chromium lives. Also the bad-network shaping of a
//! client's router (loss, delay, rate cap, blackout). Needs root (ip netns, nft, tc).
//!
//! Addresses, all inside the namespaces made here (nothing is routed to or from the host):
//!   public namespace `vvlabN-pub`: visavis on 172.(16+N).0.1 (on its loopback), and a link
//!     `rI` 172.(16+N).I.1/24 to each router I: the "internet" that routes between them;
//!   router `vvlabN-rI`: `wan` 172.(16+N).I.2/24 (its public address), `lan` 172.(16+N).(100+I).1/24;
//!   client `vvlabN-cI`: `eth0` 172.(16+N).(100+I).2/24, default route through its router.
//! IPv6-only clients the same way in fd7a:11a6:N::/48 (visavis on fd7a:11a6:N::1, router I's
//! links fd7a:11a6:N:I::/64 and fd7a:11a6:N:(100+I)::/64), served by a second visavis, since
//! one visavis relays in the family of its listen address only.
//! N is VISAVIS_E2E_NET (0-9), so labs of checkouts side by side never share a name or a subnet.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const NET = Number(process.env.VISAVIS_E2E_NET ?? 0);
const PREFIX = `vvlab${NET}-`;
const PUB = `${PREFIX}pub`;
const BASE = `172.${16 + NET}`;
/** The public address of visavis (web on 443, STUN/TURN on 3478, relays). */
export const SERVER_IP = `${BASE}.0.1`;
export const ORIGIN = `https://${SERVER_IP}`;
const BASE6 = `fd7a:11a6:${NET}`;
/** The IPv6-only clients' visavis. */
export const SERVER_IP6 = `${BASE6}::1`;
export const ORIGIN6 = `https://[${SERVER_IP6}]`;

/**
 * The kinds of client network:
 * - `open`: a public address, no NAT, no firewall;
 * - `cone`: NAT with endpoint-independent mapping and port-restricted filtering (Linux
 *   masquerade keeps a flow's source port where it can, and conntrack lets in only replies from
 *   the address and port a packet went to): the common home router;
 * - `symmetric`: address-and-port-dependent mapping (masquerade `fully-random`: a new random
 *   port for every destination), as on many mobile carriers' NATs;
 * - `tcp-only`: the cone NAT, and no UDP out at all;
 * - `tcp443`: the cone NAT, and only TCP to port 443 out (strict corporate or hotel networks);
 * - `ipv6`: IPv6 only, a public address, no firewall;
 * - `ipv6-firewall`: IPv6 only, no NAT, and a stateful firewall that lets in only replies (the
 *   IPv6 home router's default).
 * @typedef {'open' | 'cone' | 'symmetric' | 'tcp-only' | 'tcp443' | 'ipv6' | 'ipv6-firewall'} Kind
 */
/** The IPv4 kinds. @type {Kind[]} */
export const KINDS = ['open', 'cone', 'symmetric', 'tcp-only', 'tcp443'];
/** The IPv6-only kinds. @type {Kind[]} */
export const KINDS6 = ['ipv6', 'ipv6-firewall'];

/**
 * @typedef {{index: number, kind: Kind, ns: string, router: string, ip: string, wanIp: string, origin: string}} Client
 *   `origin`: the address of the visavis this client uses
 */

/** @param {string[]} args */
const run = (...args) => execFileSync(args[0], args.slice(1), { stdio: 'pipe' });
/** @param {string} ns @param {string[]} args */
const inNs = (ns, ...args) => run('ip', 'netns', 'exec', ns, ...args);
/** @param {string} ns @param {string} rules */
const nft = (ns, rules) =>
  execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] });

/**
 * Sets a kernel setting of namespace `ns` (`net.ipv4.ip_forward=1`), through /proc (procps's
 * sysctl need not be installed).
 * @param {string} ns @param {string} setting
 */
function sysctl(ns, setting) {
  const [key, value] = setting.split('=');
  inNs(ns, 'sh', '-c', `echo ${value} > /proc/sys/${key.replaceAll('.', '/')}`);
}

/** Why the lab cannot run here, or null if it can. */
export function cannotRun() {
  if (process.getuid?.() !== 0) return 'the connectivity lab needs root (network namespaces, nftables, tc)';
  for (const tool of ['ip', 'nft', 'tc', 'iptables', 'curl', 'python3']) {
    try {
      run('sh', '-c', `command -v ${tool}`);
    } catch {
      return `the connectivity lab needs ${tool} (scripts/test.sh installs it)`;
    }
  }
  return null;
}

/** Every namespace of this lab (of this VISAVIS_E2E_NET). */
function labNamespaces() {
  return String(run('ip', 'netns', 'list'))
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name.startsWith(PREFIX));
}

/** Removes every namespace of this lab (their links and rules go with them), and the delayers. */
export function removeLab() {
  for (const proc of delayers.splice(0)) proc.kill('SIGTERM');
  for (const ns of labNamespaces()) {
    try {
      run('ip', 'netns', 'del', ns);
    } catch {
      /* already gone */
    }
  }
}
// However the run ends, no namespace is left behind.
process.once('exit', () => {
  try {
    removeLab();
  } catch {
    /* nothing to do at exit */
  }
});

/**
 * A veth pair from `a` (named `aIf`, address `aIp`) to `b` (`bIf`, `bIp`), both up.
 * @param {string} a @param {string} aIf @param {string} aIp
 * @param {string} b @param {string} bIf @param {string} bIp
 */
function link(a, aIf, aIp, b, bIf, bIp) {
  run('ip', '-n', a, 'link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b);
  for (const [ns, dev, addr, side] of [[a, aIf, aIp, 1], [b, bIf, bIp, 2]]) {
    // No IPv6 addresses made by the kernel and no duplicate address detection: it would add
    // or validate them a moment after the links come up, and Chromium aborts what it has in
    // flight on any address change (net::ERR_NETWORK_CHANGED).
    run('ip', '-n', ns, 'link', 'set', String(dev), 'addrgenmode', 'none');
    run('ip', '-n', ns, 'addr', 'add', String(addr), 'dev', String(dev), ...(String(addr).includes(':') ? ['nodad'] : []));
    // An IPv6 router asks for its next hop's link address from a link-local address, and has
    // none to send from unless given one: forwarded packets would go nowhere.
    if (String(addr).includes(':')) run('ip', '-n', ns, 'addr', 'add', `fe80::${side}/64`, 'dev', String(dev), 'nodad');
    run('ip', '-n', ns, 'link', 'set', dev, 'up');
  }
}

/** @param {string} name @param {boolean} ipv6 */
function namespace(name, ipv6) {
  run('ip', 'netns', 'add', name);
  sysctl(name, `net.ipv6.conf.all.disable_ipv6=${ipv6 ? 0 : 1}`);
  sysctl(name, `net.ipv6.conf.default.disable_ipv6=${ipv6 ? 0 : 1}`);
  run('ip', '-n', name, 'link', 'set', 'lo', 'up');
}

/**
 * The router's rules for a kind: what may go out, whether it NATs, and how.
 * @param {Kind} kind
 */
function routerRules(kind) {
  if (kind === 'open' || kind === 'ipv6') return 'table inet lab { }';
  if (kind === 'ipv6-firewall') {
    return `table inet lab {
      chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        iifname "lan" accept
      }
    }`;
  }
  const out = {
    cone: 'iifname "lan" accept',
    symmetric: 'iifname "lan" accept',
    'tcp-only': 'iifname "lan" meta l4proto tcp accept',
    tcp443: 'iifname "lan" tcp dport 443 accept',
  }[kind];
  const masquerade = kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade';
  // Unsolicited packets to the public address are dropped, not answered (no ICMP), as routers do.
  return `table ip lab {
    chain forward {
      type filter hook forward priority 0; policy drop;
      ct state established,related accept
      ${out}
    }
    chain input {
      type filter hook input priority 0; policy accept;
      iifname "wan" ct state established,related accept
      iifname "wan" drop
    }
    chain postrouting {
      type nat hook postrouting priority 100;
      oifname "wan" ${masquerade}
    }
  }`;
}

/**
 * Builds the public namespace and one router and client namespace per entry of `kinds`
 * (replacing what an earlier run left).
 * @param {Kind[]} kinds
 * @returns {Client[]}
 */
export function createLab(kinds) {
  const why = cannotRun();
  if (why) throw new Error(why);
  if (kinds.length > 99) throw new Error('at most 99 clients');
  removeLab();
  const anyIpv6 = kinds.some((kind) => KINDS6.includes(kind));
  namespace(PUB, anyIpv6);
  run('ip', '-n', PUB, 'addr', 'add', `${SERVER_IP}/32`, 'dev', 'lo');
  sysctl(PUB, 'net.ipv4.ip_forward=1');
  if (anyIpv6) {
    run('ip', '-n', PUB, 'addr', 'add', `${SERVER_IP6}/128`, 'dev', 'lo', 'nodad');
    sysctl(PUB, 'net.ipv6.conf.all.forwarding=1');
  }
  return kinds.map((kind, i) => {
    const index = i + 1;
    const router = `${PREFIX}r${index}`;
    const ns = `${PREFIX}c${index}`;
    const v6 = KINDS6.includes(kind);
    // The internet side (router I's public address) and the client side of router I.
    const [pubNet, wanIp, lanNet, ip, bits] = v6
      ? [`${BASE6}:${index}::`, `${BASE6}:${index}::2`, `${BASE6}:${100 + index}::`, `${BASE6}:${100 + index}::2`, 64]
      : [`${BASE}.${index}.`, `${BASE}.${index}.2`, `${BASE}.${100 + index}.`, `${BASE}.${100 + index}.2`, 24];
    namespace(router, v6);
    namespace(ns, v6);
    link(PUB, `r${index}`, `${pubNet}1/${bits}`, router, 'wan', `${wanIp}/${bits}`);
    link(router, 'lan', `${lanNet}1/${bits}`, ns, 'eth0', `${ip}/${bits}`);
    run('ip', '-n', router, 'route', 'add', 'default', 'via', `${pubNet}1`);
    run('ip', '-n', ns, 'route', 'add', 'default', 'via', `${lanNet}1`);
    sysctl(router, v6 ? 'net.ipv6.conf.all.forwarding=1' : 'net.ipv4.ip_forward=1');
    nft(router, routerRules(kind));
    // An open client's address is public: the internet routes to it (IPv6 has no NAT: every
    // client's is). A NATed one's is not.
    if (kind === 'open' || v6) run('ip', '-n', PUB, 'route', 'add', `${lanNet}0/${bits}`, 'via', wanIp);
    return { index, kind, ns, router, ip, wanIp, origin: v6 ? ORIGIN6 : ORIGIN };
  });
}

/**
 * Starts visavis in the public namespace on port 443 of SERVER_IP (or SERVER_IP6): HTTPS with
 * a self-signed certificate, TURN over UDP/TCP on 3478 and over TLS on 443, its relay allowed
 * to reach the lab's private addresses; waits until it serves.
 * @param {string} binary
 * @param {{ipv6?: boolean}} [options]
 */
export async function startLabServer(binary, { ipv6 = false } = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'visavis-lab-'));
  const [listen, peers, origin] = ipv6 ? [`[${SERVER_IP6}]:443`, `${BASE6}::/48`, ORIGIN6] : [`${SERVER_IP}:443`, `${BASE}.0.0/16`, ORIGIN];
  const proc = spawn(
    'ip',
    ['netns', 'exec', PUB, binary, '--listen', listen, '--data-dir', dataDir, '--state', 'none',
      '--turn-allow-peer', peers, '--max-seats-per-ip', '100'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  /** @type {string[]} */
  const log = [];
  proc.stdout?.on('data', (chunk) => log.push(String(chunk)));
  proc.stderr?.on('data', (chunk) => log.push(String(chunk)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      await new Promise((resolve) => {
        proc.once('exit', resolve);
        proc.kill('SIGTERM');
      });
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  for (let i = 0; i < 150; i++) {
    try {
      inNs(PUB, 'curl', '-sfgk', '--max-time', '1', `${origin}/healthz`);
      return { log, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await stop();
  throw new Error(`visavis in ${PUB} did not start:\n${log.join('')}`);
}

/**
 * Launch options for a Chromium living in `client`'s namespace, accepting the lab server's
 * self-signed certificate (also for TURN over TLS, whose client checks it on its own).
 * @param {Client} client
 * @param {import('@playwright/test').LaunchOptions} base
 */
export function chromiumIn(client, base) {
  return {
    ...base,
    args: [...(base.args ?? []), '--ignore-certificate-errors'],
    executablePath: path.resolve('e2e/chromium-in-netns.sh'),
    env: { ...process.env, VISAVIS_NETNS: client.ns, CHROMIUM_PATH: base.executablePath ?? '/usr/bin/chromium' },
  };
}

/** Delayer processes started by `shape`, ended with the lab. @type {import('node:child_process').ChildProcess[]} */
const delayers = [];

/**
 * A bad network on `client`'s router, both directions (kernel without netem: loss with nftables'
 * `numgen`, the rate cap with a token bucket qdisc, delay with e2e/lab/delay.py on an NFQUEUE).
 * Replaces any shaping from before; `{}` clears it.
 * @param {Client} client
 * @param {{lossPercent?: number, rttMs?: number, rateKbit?: number}} how
 */
export async function shape(client, { lossPercent = 0, rttMs = 0, rateKbit = 0 }) {
  unshape(client);
  if (lossPercent > 0) {
    nft(client.router, `table inet shape {
      chain forward {
        type filter hook forward priority -10; policy accept;
        numgen random mod 1000 < ${Math.round(lossPercent * 10)} drop
      }
    }`);
  }
  if (rateKbit > 0) {
    // Upload on the way out to the internet, download on the way to the client.
    for (const dev of ['wan', 'lan']) {
      run('ip', 'netns', 'exec', client.router, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf',
        'rate', `${rateKbit}kbit`, 'burst', '12kb', 'latency', '200ms');
    }
  }
  if (rttMs > 0) {
    // Every forwarded packet, each way, waits half the round trip. `--queue-bypass`: should the
    // delayer be gone, packets pass instead of being dropped.
    const proc = spawn('ip', ['netns', 'exec', client.router, 'python3', path.resolve('e2e/lab/delay.py'),
      '--queue', '0', '--delay-ms', String(Math.round(rttMs / 2))], { stdio: ['ignore', 'ignore', 'pipe'] });
    delayers.push(proc);
    /** @type {string[]} */
    const err = [];
    proc.stderr?.on('data', (chunk) => err.push(String(chunk)));
    // It says "ready" on stderr once bound to the queue.
    for (let i = 0; i < 50 && !err.join('').includes('ready'); i++) await new Promise((r) => setTimeout(r, 100));
    if (!err.join('').includes('ready')) throw new Error(`delay.py did not start: ${err.join('')}`);
    inNs(client.router, 'iptables', '-A', 'FORWARD', '-j', 'NFQUEUE', '--queue-num', '0', '--queue-bypass');
  }
}

/** Clears `client`'s bad network. @param {Client} client */
export function unshape(client) {
  for (const cmd of [['nft', 'delete', 'table', 'inet', 'shape'], ['iptables', '-F', 'FORWARD'],
    ['tc', 'qdisc', 'del', 'dev', 'wan', 'root'], ['tc', 'qdisc', 'del', 'dev', 'lan', 'root']]) {
    try {
      inNs(client.router, ...cmd);
    } catch {
      /* was not set */
    }
  }
  for (const proc of delayers.splice(0)) proc.kill('SIGTERM');
}

/** Cuts (true) or restores (false) everything through `client`'s router, both ways. @param {Client} client @param {boolean} cut */
export function blackout(client, cut) {
  if (cut) {
    nft(client.router, `table inet blackout {
      chain forward { type filter hook forward priority -20; policy drop; }
    }`);
  } else {
    inNs(client.router, 'nft', 'delete', 'table', 'inet', 'blackout');
  }
}

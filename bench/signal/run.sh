#!/usr/bin/env bash
# Signalling at scale: visavis vs the article's Koa 2 + Socket.io 2 server vs PeerServer.
#
# Usage: bench/signal/run.sh
#
# Builds release visavis and visavis-bench, installs the Node baselines (npm ci), then runs the
# same measurements against each server in turn, every one on a freshly started server pinned
# to core $SERVER_CPU, the load generator pinned to core $CLIENT_CPU:
#   closed-10, closed-100  closed loop (each pair ping-pongs as fast as it can), ~2 KiB messages:
#                          relayed messages/s and server CPU µs per relayed message
#   rate                   $RATE messages/s over $RATE_PAIRS pairs, offer/answer/candidate sizes
#                          3072/1024/200: relay latency p50/p99/p99.9 and CPU per message
#   idle                   $IDLE idle joined connections: server KiB per connection, joins/s
#   idle-max               $IDLE_MAX idle joined connections from $PROCS load-generator
#                          processes over several 127.0.0.x source addresses (each process
#                          stays under the 20,000 open files a process may have here)
# Server CPU is utime+stime and memory VmRSS of the server process, from /proc.
#
# The load measurements (closed-10, closed-100, rate) run REPS times, the targets taking turns
# (visavis, socketio, peerjs, visavis, ...), and the report gives the median of each number.
#
# Environment (defaults in brackets): TARGETS ["visavis socketio peerjs"; add `before` with
# BEFORE=<path to another visavis binary> (and BEFORE_LABEL, e.g. a commit) to measure an earlier
# build side by side], REPS [3], DURATION
# seconds of counted load [10], WARMUP [2], SIZE [2048], RATE [5000], RATE_PAIRS [100], IDLE [4000],
# IDLE_MAX [18000], PROCS [2], SERVER_CPU [0], CLIENT_CPU [1], QUIET_WAIT seconds to wait for
# an otherwise idle machine before each run [60], RESULTS [bench/signal/results.md], DOCS
# [docs/benchmarks.md; empty: leave it alone], LOG_DIR [bench/signal/logs], REPORT_ONLY [unset;
# 1: measure nothing, only write the report again from LOG_DIR, e.g. after editing profile.md].
#
# Writes every load-generator report (JSON) to LOG_DIR, the table to RESULTS, and replaces the
# section "## Signalling: ..." of DOCS (appending it at the end; other sections are untouched).
# bench/signal/profile.md, when present, is included in that section.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

TARGETS=${TARGETS:-"visavis socketio peerjs"}
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SIZE=${SIZE:-2048}
RATE=${RATE:-5000}
RATE_PAIRS=${RATE_PAIRS:-100}
IDLE=${IDLE:-4000}
IDLE_MAX=${IDLE_MAX:-18000}
PROCS=${PROCS:-2}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_WAIT=${QUIET_WAIT:-60}
RESULTS=${RESULTS:-$HERE/results.md}
DOCS=${DOCS-$ROOT/docs/benchmarks.md}
LOG_DIR=${LOG_DIR:-$HERE/logs}
RUN_TIMEOUT=$((${DURATION%.*} + ${WARMUP%.*} + 120))
SECTION="## Signalling: visavis vs Socket.io 2 (the article's server) vs PeerServer"

say() { printf '%s\n' "$*" >&2; }
die() { say "run.sh: $*"; exit 1; }

for tool in cargo node npm taskset timeout nproc; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ "$(nproc)" -ge 2 ] || say "warning: fewer than 2 CPUs; server and load generator share a core"

if [ "${REPORT_ONLY:-}" != 1 ]; then

# ---------------------------------------------------------------- build

say "building visavis and visavis-bench (release)"
(cd "$ROOT" && timeout 1200 cargo build --release --bin visavis --bin visavis-bench >&2)
VISAVIS=$ROOT/target/release/visavis
BENCH=$ROOT/target/release/visavis-bench

if [ ! -d "$HERE/node_modules" ] || [ "$HERE/package-lock.json" -nt "$HERE/node_modules" ]; then
    say "installing the Node baselines (npm ci)"
    (cd "$HERE" && timeout 600 npm ci --no-audit --no-fund >&2)
fi

# visavis protects itself from single clients that send too much or hold too many connections;
# a benchmark is such a client, so lift those limits when this build has them.
VISAVIS_FLAGS=(--no-turn --room-capacity 2)
for flag in rate-limit rate-burst ip-rate-limit ip-rate-burst max-connections-per-ip max-sessions-per-ip \
    max-sessions max-pending-per-ip max-rooms; do
    if "$VISAVIS" --help | grep -q -- "--$flag "; then
        VISAVIS_FLAGS+=("--$flag" 1000000)
    fi
done

rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
# What was measured, for the report.
{
    echo "VISAVIS_VERSION=$("$VISAVIS" --version)"
    rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(cd "$ROOT" && git status --porcelain -- crates 2>/dev/null | grep -v visavis-bench)" ]; then
        rev="$rev with uncommitted changes under crates/"
    fi
    echo "GIT_REV=$rev"
} >"$LOG_DIR/meta.env"

# ---------------------------------------------------------------- servers

SERVER_PID=
GEN_PIDS=()
PORT=18400

cleanup() {
    for pid in "${GEN_PIDS[@]}" $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${GEN_PIDS[@]}" $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a fresh server for $1 on a new port; sets SERVER_PID and URL.
start_server() {
    PORT=$((PORT + 1))
    local log=$LOG_DIR/server-$1-$PORT.log
    case $1 in
        visavis)
            # A fresh data dir each time: a server must not restore the last run's sessions.
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$VISAVIS" --listen "127.0.0.1:$PORT" \
                --data-dir "$LOG_DIR/data-$PORT" "${VISAVIS_FLAGS[@]}" >"$log" 2>&1 &
            URL=ws://127.0.0.1:$PORT ;;
        before)
            RUST_LOG=warn taskset -c "$SERVER_CPU" "$BEFORE" --listen "127.0.0.1:$PORT" \
                "${VISAVIS_FLAGS[@]}" >"$log" 2>&1 &
            URL=ws://127.0.0.1:$PORT ;;
        socketio)
            PORT=$PORT taskset -c "$SERVER_CPU" node "$HERE/article-server.js" >"$log" 2>&1 &
            URL=ws://127.0.0.1:$PORT ;;
        peerjs)
            PORT=$PORT taskset -c "$SERVER_CPU" node "$HERE/peer-server.js" >"$log" 2>&1 &
            URL=ws://127.0.0.1:$PORT ;;
        *) die "unknown target $1" ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            sleep 0.5 # let it settle before the first RSS reading
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "$1 did not start: $(cat "$log")"
        sleep 0.1
    done
    die "$1 is not listening on $PORT"
}

# The protocol a target speaks: `before` is an earlier visavis build.
protocol() {
    if [ "$1" = before ]; then echo visavis; else echo "$1"; fi
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# Busy share of all CPUs over one second, in percent (from /proc/stat).
cpu_busy() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat
    sleep 1
    read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
    a=$((a1 + a2 + a3 + a6 + a7 + a8)); b=$((b1 + b2 + b3 + b6 + b7 + b8))
    local idle=$(((b4 + b5) - (a4 + a5))) busy=$((b - a))
    echo $((100 * busy / (busy + idle + 1)))
}

# Waits (at most QUIET_WAIT s) until the machine is otherwise idle; notes it if never.
wait_quiet() {
    local waited=0 busy
    while busy=$(cpu_busy) && [ "$busy" -gt 10 ]; do
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            say "warning: the machine stays ${busy}% busy; measuring anyway"
            echo "$1: other load on the machine (${busy}% CPU busy before the run)" >>"$LOG_DIR/noise.txt"
            return
        fi
        waited=$((waited + 1))
    done
}

# bench NAME TARGET ARGS...: one load-generator run against a fresh server, report in LOG_DIR.
bench() {
    local name=$1 target=$2
    shift 2
    start_server "$target"
    wait_quiet "$target $name"
    say "$target: $name"
    timeout "$RUN_TIMEOUT" taskset -c "$CLIENT_CPU" "$BENCH" signal --target "$(protocol "$target")" --url "$URL" \
        --server-pid "$SERVER_PID" --json "$@" \
        >"$LOG_DIR/$target-$name.json" || say "warning: $target $name failed"
    stop_server
}

# idle_max TARGET: IDLE_MAX idle connections from PROCS processes; the server's RSS is read
# once all have joined (minus its RSS before) and written to LOG_DIR/TARGET-idle-max.txt.
idle_max() {
    local target=$1 per=$(((IDLE_MAX + PROCS - 1) / PROCS)) p ip
    start_server "$target"
    wait_quiet "$target idle-max"
    say "$target: $IDLE_MAX idle connections from $PROCS processes"
    local rss0
    rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    local release=$LOG_DIR/$target-release
    rm -f "$release"
    GEN_PIDS=()
    for p in $(seq "$PROCS"); do
        # Four source addresses per process: 127.0.0.(4p-3) .. 127.0.0.(4p).
        local ips=()
        for ip in 3 2 1 0; do ips+=("127.0.0.$((4 * p - ip))"); done
        local IFS=,
        timeout $((RUN_TIMEOUT + 300)) taskset -c "$CLIENT_CPU" "$BENCH" signal --target "$(protocol "$target")" \
            --url "$URL" --pairs 0 --idle "$per" --duration 0 --warmup 0 --source-ips "${ips[*]}" \
            --concurrency 128 --tag "max$p" --hold 600 --ready-file "$LOG_DIR/$target-ready-$p" \
            --release-file "$release" --json >"$LOG_DIR/$target-idle-max-$p.json" &
        GEN_PIDS+=($!)
    done
    local waited=0
    while [ "$(cat "$LOG_DIR/$target"-ready-* 2>/dev/null | wc -l)" -lt "$PROCS" ]; do
        [ "$waited" -lt 3000 ] || die "$target: the load generators did not get ready"
        sleep 0.1
        waited=$((waited + 1))
    done
    sleep 2 # let the server settle
    local rss1 joined
    rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    joined=$(cat "$LOG_DIR/$target"-ready-* | awk '{s += $1} END {print s}')
    touch "$release"
    for p in "${GEN_PIDS[@]}"; do wait "$p" || say "warning: a load generator failed"; done
    GEN_PIDS=()
    echo "$joined $rss0 $rss1" >"$LOG_DIR/$target-idle-max.txt"
    stop_server
}

load=(--warmup "$WARMUP" --duration "$DURATION")
for rep in $(seq "$REPS"); do
    for target in $TARGETS; do
        bench "closed-10-$rep" "$target" "${load[@]}" --pairs 10 --size "$SIZE"
        bench "closed-100-$rep" "$target" "${load[@]}" --pairs 100 --size "$SIZE"
        bench "rate-$rep" "$target" "${load[@]}" --pairs "$RATE_PAIRS" --mode rate --rate "$RATE"
    done
done
for target in $TARGETS; do
    bench idle "$target" --pairs 0 --idle "$IDLE" --duration 0 --warmup 0 --concurrency 128
    idle_max "$target"
done

fi # REPORT_ONLY

# ---------------------------------------------------------------- report

COMMAND="bench/signal/run.sh"
[ "$REPS" = 3 ] || COMMAND="REPS=$REPS $COMMAND"
VISAVIS_VERSION=$(sed -n 's/^VISAVIS_VERSION=//p' "$LOG_DIR/meta.env" 2>/dev/null)
GIT_REV=$(sed -n 's/^GIT_REV=//p' "$LOG_DIR/meta.env" 2>/dev/null)
PROFILE_MD=$HERE/profile.md
export BEFORE_LABEL="${BEFORE_LABEL:-}" VISAVIS_VERSION GIT_REV PROFILE_MD LOG_DIR RESULTS DOCS SECTION COMMAND TARGETS REPS DURATION WARMUP SIZE RATE RATE_PAIRS IDLE IDLE_MAX PROCS
node - <<'JS'
'use strict';
const fs = require('fs');
const path = require('path');
const env = process.env;
const dir = env.LOG_DIR;
const names = { visavis: 'visavis', before: `visavis before (${env.BEFORE_LABEL || 'BEFORE'})`, socketio: 'Socket.io 2 (article)', peerjs: 'PeerServer' };
const targets = env.TARGETS.split(/\s+/).filter(Boolean);
const read = (t, name) => {
  try { return JSON.parse(fs.readFileSync(path.join(dir, `${t}-${name}.json`), 'utf8')); } catch { return null; }
};
// The median over the repetitions of a load measurement.
const median = (t, name, f) => {
  const vals = [];
  for (let rep = 1; rep <= Number(env.REPS); rep++) {
    const v = f(read(t, `${name}-${rep}`));
    if (v != null && !Number.isNaN(v)) vals.push(v);
  }
  if (!vals.length) return null;
  vals.sort((a, b) => a - b);
  const mid = vals.length >> 1;
  return vals.length % 2 ? vals[mid] : (vals[mid - 1] + vals[mid]) / 2;
};
const idleMax = (t) => {
  try {
    const [joined, rss0, rss1] = fs.readFileSync(path.join(dir, `${t}-idle-max.txt`), 'utf8').trim().split(/\s+/).map(Number);
    return { joined, kib: (rss1 - rss0) / joined };
  } catch { return null; }
};
const errors = (t) => {
  let n = 0;
  for (const f of fs.readdirSync(dir).filter((f) => f.startsWith(`${t}-`) && f.endsWith('.json'))) {
    try { n += JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).errors; } catch { n += 1; }
  }
  return n;
};
// Each row: label, how to get the value for a target, decimals, whether lower is better.
const rows = [
  ['relayed msg/s, closed loop, 10 pairs, ~2 KiB', (t) => median(t, 'closed-10', (r) => r?.relayed_per_sec), 0, false],
  ['server CPU µs per message, 10 pairs', (t) => median(t, 'closed-10', (r) => r?.server?.cpu_us_per_msg), 2, true],
  ['relayed msg/s, closed loop, 100 pairs, ~2 KiB', (t) => median(t, 'closed-100', (r) => r?.relayed_per_sec), 0, false],
  ['server CPU µs per message, 100 pairs', (t) => median(t, 'closed-100', (r) => r?.server?.cpu_us_per_msg), 2, true],
  [`p50 latency (ms) at ${env.RATE} msg/s`, (t) => ms(median(t, 'rate', (r) => r?.latency?.p50_us)), 3, true],
  [`p99 latency (ms) at ${env.RATE} msg/s`, (t) => ms(median(t, 'rate', (r) => r?.latency?.p99_us)), 3, true],
  [`p99.9 latency (ms) at ${env.RATE} msg/s`, (t) => ms(median(t, 'rate', (r) => r?.latency?.p999_us)), 3, true],
  [`server CPU µs per message at ${env.RATE} msg/s`, (t) => median(t, 'rate', (r) => r?.server?.cpu_us_per_msg), 2, true],
  [`server KiB per idle connection (${env.IDLE})`, (t) => read(t, 'idle')?.server?.kib_per_idle_conn, 1, true],
  [`server KiB per idle connection (max)`, (t) => idleMax(t)?.kib, 1, true],
  ['idle connections held (max)', (t) => idleMax(t)?.joined, 0, false],
  [`joins per second (${env.IDLE} connections)`, (t) => read(t, 'idle')?.joins_per_sec, 0, false],
  ['errors (all runs)', errors, 0, true],
];
function ms(us) { return us == null ? null : us / 1000; }
const fmt = (v, d) => (v == null || Number.isNaN(v) ? '–' : v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));
const baselines = targets.filter((t) => t !== 'visavis');
const head = ['measurement', ...targets.map((t) => names[t] || t), ...baselines.map((b) => `visavis ÷ ${names[b]}`)];
const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`];
for (const [label, get, d, lower] of rows) {
  const vals = targets.map(get);
  const vv = targets.includes('visavis') ? get('visavis') : null;
  const ratios = baselines.map((b) => {
    const base = get(b);
    if (vv == null || base == null || base === 0 || label.startsWith('errors') || label.startsWith('idle connections')) return '';
    const r = vv / base;
    return `${r.toFixed(r < 0.1 ? 3 : 2)}× (${lower === (r <= 1) ? 'better' : 'worse'})`;
  });
  lines.push(`| ${[label, ...vals.map((v) => fmt(v, d)), ...ratios].join(' | ')} |`);
}
// The issue's targets.
const cpu100 = (t) => median(t, 'closed-100', (r) => r?.server?.cpu_us_per_msg);
const cpuV = cpu100('visavis');
const cpuS = cpu100('socketio');
const cpuP = cpu100('peerjs');
const p99 = median('visavis', 'rate', (r) => r?.latency?.p99_us);
const p99s = [];
for (let rep = 1; rep <= Number(env.REPS); rep++) {
  const v = read('visavis', `rate-${rep}`)?.latency?.p99_us;
  if (v != null) p99s.push(ms(v).toFixed(3));
}
const kib = read('visavis', 'idle')?.server?.kib_per_idle_conn;
const verdict = (ok) => (ok == null ? 'not measured' : ok ? '**met**' : '**not met**');
const kibMax = idleMax('visavis')?.kib;
const goals = [
  `| server CPU ≤ 8 µs per relayed message (closed loop, 100 pairs) | ${fmt(cpuV, 2)} µs | ${verdict(cpuV != null ? cpuV <= 8 : null)} |`,
  `| … and ≤ 0.18× Socket.io's in the same run | ${fmt(cpuV, 2)} vs ${fmt(cpuS, 2)} µs (${cpuV != null && cpuS ? (cpuV / cpuS).toFixed(2) : '–'}×) | ${verdict(cpuV != null && cpuS != null ? cpuV <= cpuS * 0.18 : null)} |`,
  `| p99 < 2 ms at 5,000 msg/s | ${fmt(ms(p99), 3)} ms (runs: ${p99s.join(', ')}) | ${verdict(p99 != null ? p99 < 2000 : null)} |`,
  `| ≤ 6 KiB RSS per idle joined connection (${env.IDLE}) | ${fmt(kib, 1)} KiB | ${verdict(kib != null ? kib <= 6 : null)} |`,
  `| ≤ 6 KiB RSS per idle joined connection (${env.IDLE_MAX}) | ${fmt(kibMax, 1)} KiB | ${verdict(kibMax != null ? kibMax <= 6 : null)} |`,
];
let noise = '';
try { noise = fs.readFileSync(path.join(dir, 'noise.txt'), 'utf8').trim(); } catch {}
const body = [
  `Command: \`${env.COMMAND}\` (${env.VISAVIS_VERSION}, commit ${env.GIT_REV}; REPS=${env.REPS}${Number(env.REPS) > 1 ? ', load numbers are medians' : ''}; DURATION=${env.DURATION} s counted after WARMUP=${env.WARMUP} s, ` +
    `SIZE=${env.SIZE} B, RATE=${env.RATE} msg/s over ${env.RATE_PAIRS} pairs with 3072/1024/200-byte offer/answer/candidate messages, ` +
    `IDLE=${env.IDLE}, IDLE_MAX=${env.IDLE_MAX} from ${env.PROCS} load-generator processes).`,
  '',
  'Machine: Debian 12 VM, 2 cores, 24 GiB. Date: ' + new Date().toISOString().slice(0, 10) + '. Every server ran alone on core 0 (`taskset -c 0`; ' +
    'visavis therefore with one Tokio worker, Node with its one event loop), the load generator on core 1; ' +
    'a fresh server for every measurement; loopback only.',
  '',
  lines.join('\n'),
  '',
  'Ratios are visavis ÷ baseline: below 1 is better for CPU, latency and memory, above 1 for rates.',
  '',
  '| goal (from the issue) | visavis | |',
  '| --- | --- | --- |',
  goals.join('\n'),
  '',
  'How: clients in rooms of two (visavis: an accepted call, relaying `description`/`candidate`; Socket.io: ' +
    '`receiveOffer`/`receiveAnsewer`/`addIceCandidate` events forwarded with `socket.to(room).emit`; PeerServer: ' +
    '`OFFER`/`ANSWER`/`CANDIDATE` to a peer id). Each message carries its send time; latency is send → receive ' +
    'through the server. Server CPU is utime+stime from /proc over the counted window ÷ messages relayed in it; ' +
    'KiB per idle connection is the growth of VmRSS ÷ idle joined connections (rooms of two, keepalives as each ' +
    'protocol needs). The load generator does not negotiate permessage-deflate, so Socket.io (which would ' +
    'compress messages over 1 KiB for browsers) does less work here than with real clients. ' +
    'The most connections is set by the 20,000 open files one process may have on this machine: the server needs ' +
    'one per connection besides its own dozen (asked for 20,000, visavis runs out of descriptors in accept and ' +
    'some clients then time out), and each load generator the same, hence several processes, each spreading its ' +
    'connections over four 127.0.0.x source addresses (28,232 ephemeral ports each).',
  noise ? `\nNoise: ${noise.split('\n').join('; ')}.` : '',
].join('\n');
fs.writeFileSync(env.RESULTS, `# Signalling benchmark results\n\n${body}\n`);
console.error(`wrote ${env.RESULTS}`);

if (env.DOCS) {
  let profile = '';
  try { profile = fs.readFileSync(env.PROFILE_MD, 'utf8').trim(); } catch {}
  const section = `${env.SECTION}\n\n${body}\n${profile ? `\n${profile}\n` : ''}`;
  // Re-read right before writing; drop only our own section (up to the next "## ") and append it.
  const docs = fs.readFileSync(env.DOCS, 'utf8');
  const start = docs.indexOf(`${env.SECTION}\n`);
  let rest = docs;
  if (start >= 0) {
    const next = docs.indexOf('\n## ', start + env.SECTION.length);
    rest = docs.slice(0, start) + (next >= 0 ? docs.slice(next + 1) : '');
  }
  fs.writeFileSync(env.DOCS, `${rest.replace(/\s*$/, '')}\n\n${section}`);
  console.error(`updated ${env.DOCS}`);
}
JS
cat "$RESULTS"

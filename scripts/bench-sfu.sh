#!/usr/bin/env bash
# The SFU under load from visavis-bot, and Janus 1.1.2's videoroom under the same bots, in one
# run on one machine: rooms of 3, 10 and 25 bots (each publishes VP8 + Opus and subscribes to
# the others) and 1 publisher -> 200 subscribers. For each: packets the bots received per
# second (= forwarded by the server), the server's CPU from /proc over the same window,
# forwarded packets per second per core, and CPU per forwarded stream; then visavis / Janus.
#
# Needs root: the servers live in a network namespace of their own and the bots in another,
# joined by a veth pair (10.<200+NET>.0.0/24), so nothing leaves the machine and Janus, which
# never gathers loopback candidates, has an interface. Release builds; Debian's janus is
# installed when missing. Usage: scripts/bench-sfu.sh [MEASURE_SECONDS] (default 10).
# VISAVIS_BENCH_NET picks the subnet and namespace names (default 9); VISAVIS_BOT_REPLAY a
# recording from `visavis-bot record` (default: synthetic frames, which cost the servers the
# same: neither decodes).
set -euo pipefail
cd "$(dirname "$0")/.."

MEASURE=${1:-10}
NET=${VISAVIS_BENCH_NET:-9}
NET_PREFIX="10.$((200 + NET)).0"
SRV_NS="vvbench${NET}s"
BOT_NS="vvbench${NET}b"
HTTP_PORT=$((24500 + NET))
SFU_PORT=$((24600 + NET))
JANUS_PORT=$((24700 + NET))
# Bots per scenario and how many of them publish.
SCENARIOS=("3 3" "10 10" "25 25" "201 1")
OUT=${VISAVIS_BENCH_OUT:-target/bench-sfu}

[ "$(id -u)" -eq 0 ] || { echo "bench-sfu: needs root (network namespaces)" >&2; exit 1; }
if ! command -v janus >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus
fi
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl

free_gb=$(df -BG --output=avail . | tail -1 | tr -dc 0-9)
if [ ! -x target/release/visavis-bot ] && [ "$free_gb" -lt 8 ]; then
  echo "bench-sfu: only ${free_gb} GB free; a release build needs about 8" >&2
  exit 1
fi
nice cargo build --release --bin visavis --bin visavis-bot
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
  ip netns del "$SRV_NS" 2>/dev/null || true
  ip netns del "$BOT_NS" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Two namespaces and a veth pair between them; the bots get 50 addresses so per-address
# limits are not what is measured.
ip netns add "$SRV_NS"
ip netns add "$BOT_NS"
ip -n "$SRV_NS" link set lo up
ip -n "$BOT_NS" link set lo up
ip -n "$SRV_NS" link add v0 type veth peer name v1 netns "$BOT_NS"
ip -n "$SRV_NS" addr add "$NET_PREFIX.1/24" dev v0
for i in $(seq 2 51); do ip -n "$BOT_NS" addr add "$NET_PREFIX.$i/24" dev v1; done
ip -n "$SRV_NS" link set v0 up
ip -n "$BOT_NS" link set v1 up

# visavis: limits lifted so only forwarding is measured; every camera forwarded (--sfu-last-n),
# as Janus forwards every feed a subscriber asks for.
ip netns exec "$SRV_NS" target/release/visavis --listen "$NET_PREFIX.1:$HTTP_PORT" \
  --sfu-listen "$NET_PREFIX.1:$SFU_PORT" --no-turn --state none --group-limit 250 --room-capacity 250 --sfu-last-n 250 --insecure-http \
  --sfu-max-sessions 1000 --max-seats-per-ip 1000 --max-sessions-per-ip 1000 \
  --rate-limit 100000 --rate-burst 100000 --ip-rate-limit 100000 --ip-rate-burst 100000 \
  >"$work/visavis.log" 2>&1 &
visavis_pid=$!
pids+=("$visavis_pid")

# Janus: only the WebSocket transport and the videoroom plugin, ICE on v0 only.
lib=/usr/lib/x86_64-linux-gnu/janus
cat >"$work/janus.jcfg" <<EOF
general: {
	configs_folder = "$work"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	session_timeout = 60
}
media: { rtp_port_range = "40000-49999" }
nat: { ice_enforce_list = "v0" ignore_mdns = true }
plugins: { disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so" }
transports: { disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so" }
loggers: { disable = "libjanus_jsonlog.so" }
events: { broadcast = false }
EOF
cat >"$work/janus.transport.websockets.jcfg" <<EOF
general: { json = "compact" ws = true ws_port = $JANUS_PORT ws_ip = "$NET_PREFIX.1" wss = false }
admin: { admin_ws = false admin_wss = false }
EOF
# One room per scenario, each big enough.
{
  echo "general: { }"
  for i in 1 2 3 4; do
    echo "room-$((4240 + i)): { description = \"bench $i\" publishers = 250 bitrate = 0 fir_freq = 0 audiocodec = \"opus\" videocodec = \"vp8\" audiolevel_ext = true record = false }"
  done
} >"$work/janus.plugin.videoroom.jcfg"
ip netns exec "$SRV_NS" janus -F "$work" -C "$work/janus.jcfg" >"$work/janus.log" 2>&1 &
janus_pid=$!
pids+=("$janus_pid")

for _ in $(seq 1 100); do
  ip netns exec "$BOT_NS" curl -sf "http://$NET_PREFIX.1:$HTTP_PORT/healthz" >/dev/null && break
  sleep 0.1
done
sleep 2 # Janus loads its plugins

replay=()
[ -n "${VISAVIS_BOT_REPLAY:-}" ] && replay=(--replay "$VISAVIS_BOT_REPLAY")
results="$OUT/results.jsonl"
: >"$results"
n=0
for scenario in "${SCENARIOS[@]}"; do
  read -r bots publishers <<<"$scenario"
  n=$((n + 1))
  # Every bot stays long enough for all to join, the warm-up and the window.
  stay=$((MEASURE + 10 + bots / 10))
  for server in visavis janus; do
    if [ "$server" = visavis ]; then
      target=(--url "ws://$NET_PREFIX.1:$HTTP_PORT/ws" --room "bench-$n")
      pid=$visavis_pid
    else
      target=(--url "ws://$NET_PREFIX.1:$JANUS_PORT" --janus-room $((4240 + n)))
      pid=$janus_pid
    fi
    echo "== $server: $bots bots, $publishers publishing, ${MEASURE} s window" >&2
    summary=$(ip netns exec "$BOT_NS" timeout $((stay + 120)) target/release/visavis-bot run "${target[@]}" \
      --bots "$bots" --publishers "$publishers" --seconds "$stay" --join-gap-ms 20 \
      --source "$NET_PREFIX.2" --addresses 50 --measure "$MEASURE" --server-pid "$pid" \
      "${replay[@]}" || true)
    echo "$summary" >"$OUT/$server-$bots-$publishers.json"
    # Forwarded streams: each publisher's audio and video to every other bot.
    streams=$((publishers * (bots - 1) * 2))
    node -e '
      const [server, bots, publishers, streams] = process.argv.slice(1);
      let s = {};
      try { s = JSON.parse(require("fs").readFileSync(0, "utf8")); } catch {}
      const m = s.measure ?? {};
      const cores = m.serverCores ?? null;
      console.log(JSON.stringify({
        server, bots: +bots, publishers: +publishers, streams: +streams,
        connected: s.connected ?? 0, errors: (s.errors ?? []).length,
        pps: m.packetsPerSecond ?? null, cores, ppsPerCore: m.packetsPerSecondPerCore ?? null,
        cpuPercentPerStream: cores === null ? null : (100 * cores) / streams,
        lossRatio: s.received?.lossRatio ?? null, freezes: s.received?.freezes ?? null,
      }));
    ' "$server" "$bots" "$publishers" "$streams" <<<"$summary" >>"$results"
    sleep 2
  done
done

# The table for docs/benchmarks.md.
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const f = (x, d = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
  console.log("| load | streams | server | bots up | forwarded pkt/s | server cores | pkt/s per core | CPU % per stream | loss | freezes |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const load = r.publishers === r.bots ? `room of ${r.bots}` : `${r.publishers} → ${r.bots - r.publishers}`;
    console.log(`| ${load} | ${r.streams} | ${r.server} | ${r.connected}/${r.bots} | ${f(r.pps)} | ${f(r.cores, 3)} | ${f(r.ppsPerCore)} | ${f(r.cpuPercentPerStream, 3)} | ${f(r.lossRatio * 100, 2)} % | ${f(r.freezes)} |`);
  }
  console.log();
  console.log("| load | CPU per stream, visavis ÷ Janus | pkt/s per core, visavis ÷ Janus |");
  console.log("|---|---|---|");
  for (let i = 0; i + 1 < rows.length; i += 2) {
    const [v, j] = [rows[i], rows[i + 1]];
    const ratio = (a, b) => (a && b ? (a / b).toFixed(2) : "–");
    const load = v.publishers === v.bots ? `room of ${v.bots}` : `${v.publishers} → ${v.bots - v.publishers}`;
    console.log(`| ${load} | ${ratio(v.cpuPercentPerStream, j.cpuPercentPerStream)} | ${ratio(v.ppsPerCore, j.ppsPerCore)} |`);
  }
' "$results" | tee "$OUT/table.md"

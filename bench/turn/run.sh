#!/usr/bin/env bash
# Compares the server CPU per relayed packet of visavis's embedded TURN server and coturn (loopback, turnutils_uclient).
#
# Usage: bench/turn/run.sh
#
# Both servers run with the same shared secret and realm, pinned to core $SERVER_CPU; uclient
# (-y: client to client through two relay allocations, -c: no RTCP) is pinned to core
# $CLIENT_CPU. For every repetition, client count and message size the variants are run one
# after the other (visavis, coturn, visavis, coturn, ...). Server CPU is utime+stime of the
# whole server process from /proc/PID/stat, read just before and just after each uclient run.
#
# Environment (defaults in brackets): REPS [3], N messages per client [200], CLIENTS
# ["50 100 200"], SIZES message bytes ["200 1000"], VARIANTS ["visavis coturn"; also
# "coturn-1t" = coturn with --relay-threads=1], SERVER_CPU [0], CLIENT_CPU [1],
# RESULTS [bench/turn/results.md], LOG_DIR [bench/turn/logs], UCLIENT_TIMEOUT seconds [180].
#
# Writes the per-run CSV and every uclient log to LOG_DIR, and the report to RESULTS.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

REPS=${REPS:-3}
N=${N:-200}
CLIENTS=${CLIENTS:-"50 100 200"}
SIZES=${SIZES:-"200 1000"}
VARIANTS=${VARIANTS:-"visavis coturn"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RESULTS=${RESULTS:-$HERE/results.md}
LOG_DIR=${LOG_DIR:-$HERE/logs}
UCLIENT_TIMEOUT=${UCLIENT_TIMEOUT:-180}
SECRET=visavis-bench-secret
REALM=visavis
HTTP_PORT=18090
HZ=$(getconf CLK_TCK)

say() { printf '%s\n' "$*" >&2; }
die() { say "run.sh: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
    say "installing coturn (turnserver, turnutils_uclient)"
    as_root apt-get install -y coturn >&2
fi
for tool in turnserver turnutils_uclient taskset timeout ss python3 getconf; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[ "$(nproc)" -ge 2 ] || say "warning: fewer than 2 CPUs; server and client share a core"

say "building visavis (release)"
(cd "$ROOT" && cargo build --release --bin visavis >&2)
VISAVIS=$ROOT/target/release/visavis
[ -x "$VISAVIS" ] || die "no $VISAVIS"

# Every client of uclient comes from 127.0.0.1: lift visavis's per-IP limit on
# unauthenticated requests (401 challenges) when this build has it, as coturn has none.
VISAVIS_EXTRA=()
if "$VISAVIS" --help 2>/dev/null | grep -q -- '--turn-unauth-rate'; then
    VISAVIS_EXTRA+=(--turn-unauth-rate 100000)
fi

mkdir -p "$LOG_DIR"
CSV=$LOG_DIR/runs.csv
META=$LOG_DIR/meta.md
echo "rep,variant,clients,bytes,n,rc,sent,recv,lost,errors,connect_s,cpu_s,wall_s,log" >"$CSV"

# ---------------------------------------------------------------- servers

declare -A PID=()

turn_port() {
    case $1 in
        visavis) echo 23478 ;;
        coturn) echo 23479 ;;   # coturn also binds the next port (RFC 5780 alternate)
        coturn-1t) echo 23481 ;;
        *) die "unknown variant $1" ;;
    esac
}

# The server command line of a variant (relay port ranges are outside the kernel's
# ephemeral range 32768-60999 and apart from each other).
server_cmd() {
    local port
    port=$(turn_port "$1")
    case $1 in
        visavis)
            echo "$VISAVIS" --listen "127.0.0.1:$HTTP_PORT" --turn-listen "127.0.0.1:$port" \
                --turn-secret "$SECRET" --turn-realm "$REALM" --turn-relay-ports 61000-61999 \
                --turn-bandwidth 10000000 --turn-user-quota 10000 --turn-total-quota 10000 --turn-ip-quota 10000 \
                "${VISAVIS_EXTRA[@]}"
            ;;
        coturn | coturn-1t)
            local lo=63000 hi=63999 threads=()
            if [ "$1" = coturn-1t ]; then lo=62000 hi=62999 threads=(--relay-threads=1); fi
            echo turnserver -n --listening-ip=127.0.0.1 "--listening-port=$port" \
                --relay-ip=127.0.0.1 --use-auth-secret "--static-auth-secret=$SECRET" \
                "--realm=$REALM" --allow-loopback-peers --no-tls --no-dtls --no-cli \
                "--min-port=$lo" "--max-port=$hi" --log-file=/dev/null --no-stdout-log \
                --simple-log "${threads[@]}"
            ;;
    esac
}

port_busy() { ss -Hlun "sport = :$1" | grep -q . || ss -Hltn "sport = :$1" | grep -q .; }

start_server() {
    local v=$1 port cmd
    port=$(turn_port "$v")
    ! port_busy "$port" || die "port $port is already in use (another server running?)"
    read -r -a cmd <<<"$(server_cmd "$v")"
    taskset -c "$SERVER_CPU" "${cmd[@]}" >>"$LOG_DIR/$v-server.log" 2>&1 &
    PID[$v]=$!
    for _ in $(seq 100); do
        kill -0 "${PID[$v]}" 2>/dev/null || die "$v exited at start; see $LOG_DIR/$v-server.log"
        port_busy "$port" && return 0
        sleep 0.1
    done
    die "$v did not bind port $port within 10 s"
}

stop_server() {
    local v=$1 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$v]"
}

cleanup() {
    local v
    for v in "${!PID[@]}"; do stop_server "$v"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Distinct UDP socket buffer sizes of a process, as ss reports them (the kernel doubles
# what setsockopt asked for): "count x rcvbuf/sndbuf".
socket_buffers() {
    ss -Huanmp | awk -v pat="pid=$1," '
        index($0, pat) { want = 1; next }
        want && /skmem/ { match($0, /rb[0-9]+/); rb = substr($0, RSTART + 2, RLENGTH - 2)
                          match($0, /tb[0-9]+/); tb = substr($0, RSTART + 2, RLENGTH - 2)
                          n[rb "/" tb]++ }
        { want = 0 }
        END { sep = ""; for (k in n) { printf "%s%d x %s", sep, n[k], k; sep = ", " } }'
}

uclient() { # port clients bytes messages log
    timeout "$UCLIENT_TIMEOUT" taskset -c "$CLIENT_CPU" turnutils_uclient -y -c \
        -n "$4" -m "$2" -l "$3" -W "$SECRET" -u bench -p "$1" 127.0.0.1 >"$5" 2>&1
}

warm_up() {
    local v=$1 log=$LOG_DIR/warmup-$1.log
    uclient "$(turn_port "$v")" 4 200 20 "$log" || die "$v warm-up failed; see $log"
}

# ---------------------------------------------------------------- the matrix

SOCKETS_NOTE=""
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_all=$(date +%s)
for rep in $(seq "$REPS"); do
    for v in $VARIANTS; do
        start_server "$v"
        warm_up "$v"
    done
    for m in $CLIENTS; do
        for l in $SIZES; do
            for v in $VARIANTS; do
                pid=${PID[$v]}
                log=$LOG_DIR/r$rep-$v-m$m-l$l.log
                t0=$(date +%s.%N)
                c0=$(cpu_ticks "$pid")
                rc=0
                uclient "$(turn_port "$v")" "$m" "$l" "$N" "$log" || rc=$?
                c1=$(cpu_ticks "$pid" 2>/dev/null) || c1=""
                t1=$(date +%s.%N)
                read -r sent recv lost errors connect_s < <(python3 "$HERE/report.py" parse "$log")
                cpu_s=NA
                if [ -n "$c1" ]; then
                    cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
                fi
                wall_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
                echo "$rep,$v,$m,$l,$N,$rc,$sent,$recv,$lost,$errors,$connect_s,$cpu_s,$wall_s,$(basename "$log")" >>"$CSV"
                say "rep $rep/$REPS $v m=$m l=$l: rc=$rc sent=$sent recv=$recv lost=$lost" \
                    "errors=$errors connect=${connect_s}s server_cpu=${cpu_s}s wall=${wall_s}s"
                if [ "$rep" = 1 ] && [ "$m" = "${CLIENTS%% *}" ] && [ "$l" = "${SIZES%% *}" ]; then
                    SOCKETS_NOTE+="- $v: $(socket_buffers "$pid")"$'\n'
                fi
                if ! kill -0 "$pid" 2>/dev/null; then
                    say "$v died during the run; restarting it"
                    unset "PID[$v]"
                    start_server "$v"
                    warm_up "$v"
                fi
            done
        done
    done
    for v in $VARIANTS; do stop_server "$v"; done
done
elapsed=$(($(date +%s) - start_all))

# ---------------------------------------------------------------- report

{
    echo "# TURN relay benchmark: visavis vs coturn"
    echo
    echo "Written by \`bench/turn/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${elapsed} s."
    echo
    echo "- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "- visavis: $("$VISAVIS" --version 2>/dev/null), git $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo ' (with uncommitted changes)'), release build"
    echo "- coturn: turnserver $(turnserver --version 2>/dev/null | head -1), Debian package $(dpkg-query -W -f='${Version}' coturn 2>/dev/null || echo '?')"
    echo "- Repetitions: $REPS; messages per client (-n): $N; clients (-m): $CLIENTS; message bytes (-l): $SIZES; variants run alternately in this order: $VARIANTS"
    echo "- Server pinned to CPU $SERVER_CPU, uclient to CPU $CLIENT_CPU (taskset); CLK_TCK $HZ; load average before the runs: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Servers:"
    echo
    for v in $VARIANTS; do echo "    $(server_cmd "$v" | sed "s#$ROOT/##")"; done
    echo
    echo "Client (one run): \`turnutils_uclient -y -c -n $N -m CLIENTS -l BYTES -W SECRET -u bench -p PORT 127.0.0.1\`"
    echo
    echo "UDP socket buffers seen with \`ss -m\` after the first run (count x rcvbuf/sndbuf bytes, as the kernel reports them: twice what was asked):"
    echo
    printf '%s' "$SOCKETS_NOTE"
} >"$META"

python3 "$HERE/report.py" table "$CSV" "$RESULTS" "$META"
say "report: $RESULTS; logs: $LOG_DIR"

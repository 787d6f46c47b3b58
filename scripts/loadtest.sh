#!/usr/bin/env bash
# Load test of POST /v1/sessions/validate with every feature on: the real
# sessionsvc binary over Redis, the access event of every validate written
# to the outbox and relayed to a JetStream server of the test's own.
# Everything runs on 127.0.0.1 and stops by itself.
#
#   scripts/loadtest.sh [duration=20s] [connections=50] [threads=2]
#   RATE=5000 scripts/loadtest.sh ...   paced to 5,000 req/s in all, for
#                                       latency below saturation
#   PROFILE=/tmp/cpu.pprof scripts/loadtest.sh ...
#                                       also an 8 s CPU profile of the
#                                       service under load, and its
#                                       allocations in $PROFILE.allocs
#   TARGET=ref scripts/loadtest.sh ...  the same load on tools/refsvc, the
#                                       issue's "naive handler with one
#                                       go-redis pipeline", for scale;
#                                       TARGET=bare: net/http alone
#                                       (scripts/loadcompare.sh alternates)
#   SESSIONSVC_BIN=/tmp/old scripts/loadtest.sh ...
#                                       a given sessionsvc binary instead of
#                                       this tree's, to compare builds
#
# Prints wrk's figures, the server's CPU per validate, and the number of
# access events that reached JetStream.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s}
CONNS=${2:-50}
THREADS=${3:-2}
PORT=${LOAD_PORT:-18080}
NATS_PORT=${LOAD_NATS_PORT:-14222}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if command -v redis-cli >/dev/null; then
    redis-cli --scan --pattern 'loadtest:*' | xargs -r -n 500 redis-cli del >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }

if [[ -n "${SESSIONSVC_BIN:-}" ]]; then
  cp "$SESSIONSVC_BIN" "$work/sessionsvc"
else
  go build -o "$work/sessionsvc" ./cmd/sessionsvc
fi
go build -o "$work/seedsessions" ./tools/seedsessions

MON_PORT=${LOAD_NATS_MONITOR_PORT:-18222}
env -u GOMAXPROCS nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$MON_PORT" -js -sd "$work/nats" -l "$work/nats.log" &
pids+=($!)
KEY=load-app-secret-0123456789abcdef
SESSIONSVC_API_KEYS="load:app:$KEY" "$work/sessionsvc" -listen "127.0.0.1:$PORT" \
  -nats-url "nats://127.0.0.1:$NATS_PORT" -redis-key-prefix loadtest -max-sessions 0 -log-level warn -debug-addr 127.0.0.1:16060 \
  2>"$work/sessionsvc.log" &
svc=$!
pids+=($svc)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

"$work/seedsessions" -url "http://127.0.0.1:$PORT" -key "$KEY" -n 2000 -out "$work/tokens.txt"

# The server under load: sessionsvc, or the yardstick on the same tokens.
TARGET=${TARGET:-sessionsvc}
LOAD_URL="http://127.0.0.1:$PORT"
case "$TARGET" in
sessionsvc) ;;
ref | bare)
  go build -o "$work/refsvc" ./tools/refsvc
  REF_PORT=${LOAD_REF_PORT:-18081}
  ref_flags=(-tokens "$work/tokens.txt" -prefix loadtest:ref:)
  [[ "$TARGET" == bare ]] && ref_flags=(-bare)
  "$work/refsvc" -listen "127.0.0.1:$REF_PORT" "${ref_flags[@]}" 2>"$work/refsvc.log" &
  svc=$!
  pids+=($svc)
  LOAD_URL="http://127.0.0.1:$REF_PORT"
  for _ in $(seq 100); do curl -sS -o /dev/null "$LOAD_URL/" 2>/dev/null && break; sleep 0.1; done
  ;;
*) echo "TARGET: want sessionsvc, ref or bare, not $TARGET" >&2; exit 2 ;;
esac

stream_msgs() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^sessionmon_outbox_events_published_total/ {print $2}'; }
# Messages in JetStream (a message holds one event or a batch of them).
js_msgs() { curl -fsS "http://127.0.0.1:$MON_PORT/jsz" | tr ',' '\n' | awk -F: '/"messages"/ {gsub(/[^0-9]/, "", $2); print $2; exit}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/${1:-$svc}/stat"; }
# The whole machine's busy and idle ticks (all CPUs), from /proc/stat.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
# The Redis on 6379 by its own word: tests may run other redis-servers.
redis_pid=$(redis-cli -p 6379 info server | awk -F: '/^process_id:/ {print $2 + 0}')
nats_pid=${pids[0]}

# Warm up, then measure.
TOKENS="$work/tokens.txt" API_KEY="$KEY" wrk -t"$THREADS" -c"$CONNS" -d3s -s scripts/load/validate.lua "$LOAD_URL" >/dev/null
sleep 1
pub0=$(stream_msgs)
msgs0=$(js_msgs)
cpu0=$(cpu_ticks)
rcpu0=$(cpu_ticks "$redis_pid"); ncpu0=$(cpu_ticks "$nats_pid")
read -r busy0 idle0 < <(machine_ticks)
if [[ -n "${PROFILE:-}" && "$TARGET" == sessionsvc ]]; then
  curl -fsS -o "$PROFILE" "http://127.0.0.1:16060/debug/pprof/profile?seconds=8" &
  profiler=$!
fi
CONNS="$CONNS" TOKENS="$work/tokens.txt" API_KEY="$KEY" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
  -s scripts/load/validate.lua "$LOAD_URL" | tee "$work/wrk.txt"
cpu1=$(cpu_ticks)
rcpu1=$(cpu_ticks "$redis_pid"); ncpu1=$(cpu_ticks "$nats_pid")
read -r busy1 idle1 < <(machine_ticks)
if [[ -n "${PROFILE:-}" && "$TARGET" == sessionsvc ]]; then
  wait "$profiler" || true
  curl -fsS -o "$PROFILE.allocs" "http://127.0.0.1:16060/debug/pprof/allocs"
fi
for _ in $(seq 100); do
  depth=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^sessionmon_outbox_depth/ {print $2}')
  [[ "$depth" == "0" ]] && break
  sleep 0.1
done
pub1=$(stream_msgs)
msgs1=$(js_msgs)
reqs=$(awk '/^requests / {print $2}' "$work/wrk.txt")
hz=$(getconf CLK_TCK)
awk -v c0="$cpu0" -v c1="$cpu1" -v r0="$rcpu0" -v r1="$rcpu1" -v m0="$ncpu0" -v m1="$ncpu1" \
  -v hz="$hz" -v n="$reqs" -v p0="$pub0" -v p1="$pub1" -v j0="$msgs0" -v j1="$msgs1" \
  -v b0="$busy0" -v b1="$busy1" -v i0="$idle0" -v i1="$idle1" 'BEGIN {
  printf "server_cpu_us_per_validate %.1f\n", (c1 - c0) / hz * 1e6 / n
  printf "redis_cpu_us_per_validate %.1f\n", (r1 - r0) / hz * 1e6 / n
  printf "nats_cpu_us_per_validate %.1f\n", (m1 - m0) / hz * 1e6 / n
  # Everything else: wrk, and kernel work not charged to a process.
  printf "machine_cpu_us_per_validate %.1f (idle %.0f%%)\n", (b1 - b0) / hz * 1e6 / n, 100 * (i1 - i0) / (b1 - b0 + i1 - i0)
  if (p1 > p0) {
    printf "events_published %d (validates %d)\n", p1 - p0, n
    printf "jetstream_messages %d (%.1f events a message)\n", j1 - j0, (p1 - p0) / (j1 - j0 > 0 ? j1 - j0 : 1)
  }
}'

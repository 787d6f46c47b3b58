#!/usr/bin/env bash
# Compares the session service with its yardsticks on this machine, runs
# interleaved so that a noisy neighbour hurts all of them alike:
#   sessionsvc  every feature on (scripts/loadtest.sh)
#   ref         tools/refsvc: the issue's "naive Go handler with one
#               go-redis pipeline", quoted at ~35,000 req/s for scale
#   bare        tools/refsvc -bare: net/http and JSON decoding alone
# and prints each run, the medians, and sessionsvc as a share of ref.
#
#   scripts/loadcompare.sh [rounds=3] [duration=20s] [connections=50] [threads=2]
#   TARGETS="sessionsvc ref" scripts/loadcompare.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-20s}
CONNS=${3:-50}
THREADS=${4:-2}
TARGETS=${TARGETS:-sessionsvc ref bare}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    TARGET=$target bash scripts/loadtest.sh "$DURATION" "$CONNS" "$THREADS" 2>/dev/null |
      awk -v t="$target" -v r="$round" '
        /^Requests\/sec:/ {rps = $2}
        /^p99_ms/ {p99 = $2}
        /^non2xx/ {bad = $2}
        /^server_cpu_us_per_validate/ {cpu = $2}
        /^redis_cpu_us_per_validate/ {rcpu = $2}
        /^machine_cpu_us_per_validate/ {mcpu = $2}
        END {printf "%s %d %.0f %.2f %.1f %.1f %.1f %d\n", t, r, rps, p99, cpu, rcpu, mcpu, bad}' >>"$out"
  done
done

echo "target round req/s p99_ms server_us redis_us machine_us non2xx"
cat "$out"
# Medians per target, then sessionsvc against ref.
sort -k1,1 -k3,3n "$out" | awk '
  function median(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  {
    n[$1]++; k = n[$1]
    rps[$1, k] = $3; p99[$1, k] = $4; cpu[$1, k] = $5; rcpu[$1, k] = $6; mcpu[$1, k] = $7
  }
  END {
    print "median:"
    for (t in n) {
      for (f = 1; f <= 5; f++) {
        delete v
        for (k = 1; k <= n[t]; k++) {
          if (f == 1) v[k] = rps[t, k]; else if (f == 2) v[k] = p99[t, k]
          else if (f == 3) v[k] = cpu[t, k]; else if (f == 4) v[k] = rcpu[t, k]; else v[k] = mcpu[t, k]
        }
        asort(v)
        m[t, f] = median(v, n[t])
      }
      printf "%s req/s %.0f p99_ms %.2f server_us %.1f redis_us %.1f machine_us %.1f\n", t, m[t, 1], m[t, 2], m[t, 3], m[t, 4], m[t, 5]
    }
    if (("sessionsvc", 1) in m && ("ref", 1) in m)
      printf "sessionsvc/ref: req/s %.2f, server CPU %.2f, p99 %.2f\n", m["sessionsvc", 1] / m["ref", 1], m["sessionsvc", 3] / m["ref", 3], m["sessionsvc", 2] / m["ref", 2]
  }'

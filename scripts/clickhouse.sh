#!/usr/bin/env bash
# clickhouse.sh start|stop|status: a local ClickHouse for the integration
# tests, without internet or Docker.
#
# The server is libchdb.so (ClickHouse as a library) from the npm package
# @chdb/lib-linux-x64-gnu, run by tools/chlaunch. Everything lives in
# $SESSIONMON_CACHE/chdb (default ~/.cache/sessionmon/chdb): the npm tarball,
# the extracted library, the built launcher, the data dir, the log and the
# pidfile. Only the first start downloads, extracts and builds.
#
# Environment: CLICKHOUSE_TCP_PORT (9000), CLICKHOUSE_HTTP_PORT (8123),
# CLICKHOUSE_LISTEN (127.0.0.1), SESSIONMON_CACHE.
set -euo pipefail

CHDB_PACKAGE=@chdb/lib-linux-x64-gnu
CHDB_VERSION=26.7.3-stable.1 # exact: later versions lack server mode

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SESSIONMON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sessionmon}/chdb
tcp_port=${CLICKHOUSE_TCP_PORT:-9000}
http_port=${CLICKHOUSE_HTTP_PORT:-8123}
listen=${CLICKHOUSE_LISTEN:-127.0.0.1}

tarball=$cache/chdb-lib-linux-x64-gnu-$CHDB_VERSION.tgz
lib=$cache/libchdb-$CHDB_VERSION.so
bin=$cache/chlaunch
data=$cache/data
log=$cache/clickhouse.log
pidfile=$cache/clickhouse.pid

# http_get PATH_AND_QUERY prints the body of a GET to the HTTP port, or
# fails. It uses curl, or bash's /dev/tcp where there is no curl.
http_get() {
	if command -v curl >/dev/null; then
		curl -fsS --max-time 5 "http://127.0.0.1:$http_port$1" 2>/dev/null
		return
	fi
	local resp
	resp=$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
		cat <&3' _ "$http_port" "$1" 2>/dev/null) || return 1
	[[ $resp == "HTTP/1."[01]" 200"* ]] || return 1
	printf '%s\n' "${resp#*$'\r\n\r\n'}"
}

ping() { [[ $(http_get /ping) == "Ok." ]]; }

# alive PID: the process runs (a zombie does not) and is our launcher.
alive() {
	local state
	state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $state != Z* ]] && grep -qa chlaunch "/proc/$1/cmdline" 2>/dev/null
}

running_pid() {
	local pid
	[[ -s $pidfile ]] && pid=$(<"$pidfile") && alive "$pid" && echo "$pid"
}

# elapsed T0 prints the seconds since $EPOCHREALTIME was T0.
elapsed() {
	local now=$EPOCHREALTIME
	local ms=$(((${now//[.,]/} - ${1//[.,]/}) / 1000))
	printf '%d.%03d\n' $((ms / 1000)) $((ms % 1000))
}

fail() {
	echo "clickhouse.sh: $*" >&2
	exit 1
}

# fail_log is fail for a server that did not come up: it shows the log.
fail_log() {
	echo "clickhouse.sh: $*" >&2
	echo "--- last lines of $log:" >&2
	tail -n 30 "$log" >&2 || true
	exit 1
}

prepare() {
	mkdir -p "$cache"
	if [[ ! -s $lib ]]; then
		if [[ ! -s $tarball ]]; then
			echo "downloading $CHDB_PACKAGE@$CHDB_VERSION (about 180 MB) into $cache" >&2
			(cd "$cache" && npm pack "$CHDB_PACKAGE@$CHDB_VERSION" >npm.log 2>&1) ||
				{ cat "$cache/npm.log" >&2; fail "npm pack failed"; }
			[[ -s $tarball ]] || fail "npm pack did not make $tarball"
		fi
		echo "extracting libchdb.so into $cache" >&2
		local tmp
		tmp=$(mktemp -d "$cache/extract.XXXXXX")
		tar -xzf "$tarball" -C "$tmp" package/libchdb.so || { rm -rf "$tmp"; fail "cannot extract $tarball (delete it to download it again)"; }
		mv "$tmp/package/libchdb.so" "$lib"
		rm -rf "$tmp"
	fi
	if [[ ! -x $bin || -n $(find "$root/tools/chlaunch" -newer "$bin" -print -quit) ]]; then
		echo "building $bin" >&2
		(cd "$root" && go build -o "$bin.tmp" ./tools/chlaunch) || fail "cannot build tools/chlaunch"
		mv "$bin.tmp" "$bin"
	fi
}

start() {
	if ping; then
		echo "ClickHouse already answers on 127.0.0.1:$http_port"
		return
	fi
	mkdir -p "$cache"
	# One start at a time: concurrent test runs must not start two servers.
	exec 9>"$cache/start.lock"
	flock 9
	if ping; then
		echo "ClickHouse already answers on 127.0.0.1:$http_port"
		return
	fi

	local pid t0=$EPOCHREALTIME
	if pid=$(running_pid); then
		# Ours but not answering: starting up, or serving other ports.
		local cmd
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
		[[ $cmd == *" -http-port $http_port "* ]] || fail "pid $pid serves other ports ($cmd): stop it first"
	else
		prepare
		mkdir -p "$data"
		# setsid: the server outlives the shell and its Ctrl-C; 9>&-: it
		# must not hold the start lock.
		setsid nohup "$bin" -lib "$lib" -path "$data/" -listen "$listen" \
			-tcp-port "$tcp_port" -http-port "$http_port" >"$log" 2>&1 </dev/null 9>&- &
		pid=$!
		echo "$pid" >"$pidfile"
	fi

	local deadline=$((SECONDS + 60))
	until ping && [[ $(http_get '/?query=SELECT%201') == 1 ]]; do
		alive "$pid" || fail_log "the server (pid $pid) exited"
		((SECONDS < deadline)) || fail_log "the server (pid $pid) did not answer on port $http_port within 60 s"
		sleep 0.2
	done
	echo "ClickHouse running on $listen (native port $tcp_port, http port $http_port), pid $pid, up in $(elapsed "$t0") s; data $data, log $log"
}

stop() {
	local pid
	if ! pid=$(running_pid); then
		rm -f "$pidfile"
		echo "ClickHouse is not running (no live pid in $pidfile)"
		return
	fi
	kill -TERM "$pid"
	for _ in $(seq 100); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		echo "pid $pid ignored SIGTERM for 10 s, killing it" >&2
		kill -KILL "$pid"
	fi
	rm -f "$pidfile"
	echo "ClickHouse stopped (pid $pid)"
}

status() {
	if ping; then
		echo "ClickHouse answers on 127.0.0.1:$http_port"
	else
		echo "ClickHouse does not answer on 127.0.0.1:$http_port" >&2
		return 1
	fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# A Kafka-protocol broker for the Kafka backend's tests: Tansu (Apache-2.0, crates.io),
# in memory, listening on one fixed loopback port.
#
#   scripts/broker.sh install   build Tansu once into $WAYBILL_TANSU_CACHE (skipped if there)
#   scripts/broker.sh start     install if needed, start in the background, wait for the port
#   scripts/broker.sh stop      stop the broker this script started (pid file)
#   scripts/broker.sh status    say whether it runs and answers
#
# Environment:
#   WAYBILL_TANSU_CACHE   install root (default: $HOME/.cache/waybill/tansu)
#   WAYBILL_BROKER_PORT   port (default: 19092); tests read WAYBILL_TEST_KAFKA (default
#                         127.0.0.1:19092), so set both when changing it
#   WAYBILL_BROKER_DIR    pid and log files (default: <repo>/target/broker)
#   TANSU_VERSION         crate version to install (default: 0.6.0)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${WAYBILL_TANSU_CACHE:-$HOME/.cache/waybill/tansu}"
PORT="${WAYBILL_BROKER_PORT:-19092}"
DIR="${WAYBILL_BROKER_DIR:-$ROOT/target/broker}"
VERSION="${TANSU_VERSION:-0.6.0}"
BIN="$CACHE/bin/tansu"
PIDFILE="$DIR/tansu.pid"
LOG="$DIR/tansu.log"
ADDR="127.0.0.1:$PORT"

say() { echo "broker.sh: $*" >&2; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

running_pid() {
	[[ -f "$PIDFILE" ]] || return 1
	local pid
	pid="$(cat "$PIDFILE")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install() {
	if [[ -x "$BIN" ]]; then
		say "tansu already installed at $BIN"
		return
	fi
	say "building tansu $VERSION into $CACHE (once; this takes several minutes)"
	local started=$SECONDS
	# dynostore: the in-memory (and object store) storage engine.
	cargo install tansu --version "$VERSION" --locked --features dynostore --root "$CACHE"
	say "tansu built in $((SECONDS - started)) s"
}

start() {
	if pid="$(running_pid)"; then
		say "tansu already running (pid $pid) on $ADDR"
		return
	fi
	if answers; then
		say "port $PORT is taken by another process; stop it or set WAYBILL_BROKER_PORT"
		exit 1
	fi
	install
	mkdir -p "$DIR"
	RUST_LOG="${RUST_LOG:-warn}" nohup "$BIN" broker \
		--listener-url "tcp://$ADDR" \
		--advertised-listener-url "tcp://$ADDR" \
		--storage-engine "memory://tansu/" \
		>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 300); do
		if answers; then
			say "tansu running (pid $(cat "$PIDFILE")) on $ADDR, log $LOG"
			return
		fi
		if ! running_pid >/dev/null; then
			say "tansu exited at start; its log ($LOG) ends with:"
			tail -n 20 "$LOG" >&2 || true
			rm -f "$PIDFILE"
			exit 1
		fi
		sleep 0.1
	done
	say "tansu did not accept connections on $ADDR within 30 s; log: $LOG"
	stop
	exit 1
}

stop() {
	if pid="$(running_pid)"; then
		kill "$pid"
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -9 "$pid" 2>/dev/null || true
		fi
		say "tansu (pid $pid) stopped"
	else
		say "tansu is not running"
	fi
	rm -f "$PIDFILE"
}

status() {
	if pid="$(running_pid)"; then
		if answers; then
			say "tansu running (pid $pid) on $ADDR"
		else
			say "tansu process $pid exists but $ADDR does not answer"
			exit 1
		fi
	else
		say "tansu is not running"
		exit 1
	fi
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 install|start|stop|status" >&2
	exit 2
	;;
esac

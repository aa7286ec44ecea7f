#!/usr/bin/env bash
# TCP echo benchmark: examples/echo_server (per backend) and a tokio echo server, side by side
# in one run, ROUNDS times alternating, under two load shapes and two clients:
#   - echo_tokio_client (an independent client: tokio, one task per connection, strict
#     ping-pong) with --threads 1 (one application thread holding all 64 connections) and
#     --threads 2;
#   - echo_load (the lockstep driver: each thread writes its 32 sockets, then reads them).
# 64 connections, 64-byte messages. Also prints each server's CPU time per echoed message
# (user + system from /proc/PID/stat over the run; the load generator shares the cores).
# Usage: bash benches/echo.sh [--no-build]; SHAPES="t1 t2 lockstep" picks the load shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-19095}
SHAPES=${SHAPES:-"t1 t2 lockstep"}
[ "${1:-}" = "--no-build" ] || cargo build --release --example echo_server \
  --example peer_tokio_echo --example echo_load --example echo_tokio_client
load() { # shape
  case $1 in
    t1) target/release/examples/echo_tokio_client --addr 127.0.0.1:$PORT --conns 64 --size 64 --threads 1 --secs "$SECS" ;;
    t2) target/release/examples/echo_tokio_client --addr 127.0.0.1:$PORT --conns 64 --size 64 --threads 2 --secs "$SECS" ;;
    lockstep) target/release/examples/echo_load --addr 127.0.0.1:$PORT --conns 64 --size 64 --threads 2 --secs "$SECS" ;;
  esac
}
run() { # shape name command...
  local shape=$1 name=$2; shift 2
  "$@" --addr 127.0.0.1:$PORT >/dev/null 2>&1 & local pid=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  printf '%-9s %-14s ' "$shape" "$name"
  local t0; t0=$(cpu_ticks $pid)
  local out; out=$(load "$shape")
  local t1; t1=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  local n; n=$(sed -E 's/.*\(([0-9]+) messages.*/\1/' <<<"$out")
  printf '%s  cpu %s us/msg\n' "$out" \
    "$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d * 1e6 / hz / n}')"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
for r in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    run "$shape" "percore-uring" env PERCORE_IO=uring target/release/examples/echo_server
    [ -z "${MIO:-}" ] || run "$shape" "percore-mio" env PERCORE_IO=mio target/release/examples/echo_server
    run "$shape" "tokio" target/release/examples/peer_tokio_echo
  done
done

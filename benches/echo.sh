#!/usr/bin/env bash
# TCP echo benchmark: examples/echo_server (per backend) and a tokio echo server, side by side
# in one run, driven by benches/peers/echo_load.rs (64 connections, 64-byte messages, one in
# flight per connection), ROUNDS times alternating. Also prints each server's CPU time per
# echoed message (user + system from /proc/PID/stat over the run; the load generator shares the
# cores). Usage: bash benches/echo.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-19095}
[ "${1:-}" = "--no-build" ] || cargo build --release --example echo_server --example peer_tokio_echo --example echo_load
run() {
  local name=$1; shift
  "$@" --addr 127.0.0.1:$PORT >/dev/null 2>&1 & local pid=$!
  sleep 0.5
  printf '%-14s ' "$name"
  local t0; t0=$(cpu_ticks $pid)
  local out; out=$(target/release/examples/echo_load --addr 127.0.0.1:$PORT --conns 64 --size 64 --secs "$SECS")
  local t1; t1=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  local n; n=$(sed -E 's/.*\(([0-9]+) messages.*/\1/' <<<"$out")
  printf '%s  cpu %s us/msg\n' "$out" \
    "$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d * 1e6 / hz / n}')"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
for r in $(seq "$ROUNDS"); do
  run "percore-uring" env PERCORE_IO=uring target/release/examples/echo_server
  run "percore-mio" env PERCORE_IO=mio target/release/examples/echo_server
  run "tokio" target/release/examples/peer_tokio_echo
done

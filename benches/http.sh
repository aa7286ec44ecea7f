#!/usr/bin/env bash
# HTTP plaintext benchmark: examples/http_server (per backend) and the hyper + tokio peer,
# side by side in one run, `wrk -tT -c64 -d${SECS:-10}s --latency` against each, ROUNDS times
# alternating, for each T in THREADS (default "2 1": two client threads, then one client
# thread holding all 64 connections). ACCEPT=1 adds runs with AcceptMode::Distribute and ::ReusePort (io_uring) next to
# the default (IncomingCpu).
# Also prints each server's CPU time per request (user + system, from /proc/PID/stat over the
# wrk run): with wrk on the same cores, requests/s also measures how much CPU the server leaves
# to wrk, while CPU per request compares the servers' own cost.
# Usage: bash benches/http.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-10}; ROUNDS=${ROUNDS:-2}; PORT=${PORT:-18090}
[ "${1:-}" = "--no-build" ] || cargo build --release --example http_server --example peer_hyper
THREADS=${THREADS:-"2 1"}
run() { # name, command... (uses $T, the wrk threads)
  local name=$1; shift
  "$@" --addr 127.0.0.1:$PORT >/dev/null 2>&1 & local pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  local t0; t0=$(cpu_ticks $pid)
  local out; out=$(wrk -t"$T" -c64 -d${SECS}s --latency http://127.0.0.1:$PORT/)
  local t1; t1=$(cpu_ticks $pid)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  local reqs; reqs=$(awk '/requests in/{print $1}' <<<"$out")
  printf 'wrk-t%s %-14s %10s req/s  p50 %8s  p99 %8s  cpu %5s us/req\n' "$T" "$name" \
    "$(awk '/Requests\/sec/{print $2}' <<<"$out")" \
    "$(awk '$1=="50%"{print $2}' <<<"$out")" "$(awk '$1=="99%"{print $2}' <<<"$out")" \
    "$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d * 1e6 / hz / n}')"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
for r in $(seq "$ROUNDS"); do for T in $THREADS; do
  run "percore-uring" env PERCORE_IO=uring target/release/examples/http_server
  run "percore-mio" env PERCORE_IO=mio target/release/examples/http_server
  [ -z "${ACCEPT:-}" ] || run "uring-distribute" env PERCORE_IO=uring target/release/examples/http_server --accept distribute
  [ -z "${ACCEPT:-}" ] || run "uring-reuseport" env PERCORE_IO=uring target/release/examples/http_server --accept reuseport
  run "hyper" target/release/examples/peer_hyper
done; done

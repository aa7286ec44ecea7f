#!/usr/bin/env bash
# Memory held by idle keep-alive connections: examples/http_server on each backend, co-located
# and with a dedicated I/O thread, `CONNS` (10,000) connections opened by
# benches/peers/idle_conns.rs, each after one request, then held. Prints the server's VmRSS
# before and while holding them, and the difference (issue target: < 100 MiB extra).
# Kernel socket buffers are not in the process RSS.
# Usage: bash benches/idle_conns.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-10000}; PORT=${PORT:-18093}
ulimit -n $((CONNS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "${1:-}" = "--no-build" ] || cargo build --release --example http_server --example idle_conns
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
run() { # name, env...
  local name=$1; shift
  env "$@" target/release/examples/http_server --addr 127.0.0.1:$PORT >/dev/null 2>&1 & local pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  local before; before=$(rss_kib $pid)
  local fifo; fifo=$(mktemp -u); mkfifo "$fifo"
  target/release/examples/idle_conns --addr 127.0.0.1:$PORT --conns "$CONNS" --hold 3 >"$fifo" &
  local cpid=$!
  read -r line <"$fifo"; rm -f "$fifo"
  sleep 0.5
  local during; during=$(rss_kib $pid)
  wait $cpid
  kill -TERM $pid; wait $pid 2>/dev/null || true
  printf '%-22s %s: VmRSS %6.1f MiB -> %6.1f MiB  (+%.1f MiB, %.2f KiB/conn)\n' "$name" "$line" \
    "$(bc -l <<<"$before/1024")" "$(bc -l <<<"$during/1024")" "$(bc -l <<<"($during-$before)/1024")" \
    "$(bc -l <<<"($during-$before)/$CONNS")"
}
run "uring co-located" PERCORE_IO=uring PERCORE_IO_COLOCATED=1
run "mio co-located" PERCORE_IO=mio PERCORE_IO_COLOCATED=1
run "uring dedicated" PERCORE_IO=uring PERCORE_IO_COLOCATED=0
run "mio dedicated" PERCORE_IO=mio PERCORE_IO_COLOCATED=0

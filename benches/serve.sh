#!/usr/bin/env bash
# `percore serve` next to redis-server (Debian's, 7.0) under redis-benchmark, in the same run,
# alternating the two servers for every row, and the memory of 1 M keys.
#
#   bash benches/serve.sh                  # every table below
#   N=200000 ROUNDS=1 bash benches/serve.sh
#   ONLY=memory bash benches/serve.sh
#   ONLY=scaling WORKERS="1 2 4 8 12" THREADS=4 bash benches/serve.sh   # 1 -> N workers
#
# Tables (each row: both servers, one after the other, ROUNDS times; the median is printed):
#   layout   unpinned:  servers and redis-benchmark unpinned (percore: its default workers)
#            unpinned1: the same with percore --workers 1 (one shard, like redis's one thread)
#            pinned:    both servers on CPU 1 (percore --workers 1), redis-benchmark on CPU 0
#   pipeline -P 1 and -P 16
#   persist  off (redis: --save '' --appendonly no; percore: --appendonly no), everysec,
#            always (both: appendonly, appendfsync X)
# Columns: requests/s ours, redis, ratio, p99 (ms) ours, redis.
#
# Env: N (requests per test, default 1000000), R (key space, 100000), C (clients, 50),
# ROUNDS (default 3), TESTS (default set,get,incr,lpush,lpop,sadd,hset,mset), LAYOUTS
# ("unpinned pinned"), PIPES ("1 16"), PERSIST ("off everysec always"), ONLY (tput|memory|
# scaling; empty: tput and memory).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
R=${R:-100000}
C=${C:-50}
ROUNDS=${ROUNDS:-3}
TESTS=${TESTS:-set,get,incr,lpush,lpop,sadd,hset,mset}
LAYOUTS=${LAYOUTS:-unpinned pinned}
PIPES=${PIPES:-1 16}
PERSIST=${PERSIST:-off everysec always}
ONLY=${ONLY:-}

cargo build --release --quiet --bin percore
BIN=target/release/percore
WORK=$(mktemp -d /tmp/serve-bench.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on $1 did not start" >&2
  return 1
}

# start_server KIND LAYOUT PERSIST PORT -> pid
start_server() {
  local kind=$1 layout=$2 persist=$3 port=$4 pin=""
  [ "$layout" = pinned ] && pin="taskset -c 1"
  rm -rf "$WORK/data-$kind"
  mkdir -p "$WORK/data-$kind"
  if [ "$kind" = percore ]; then
    local extra=()
    [ "$layout" = pinned ] && extra=(--workers 1)
    [ "$layout" = unpinned1 ] && extra=(--workers 1)
    case $persist in
      off) extra+=(--appendonly no) ;;
      *) extra+=(--appendfsync "$persist") ;;
    esac
    RUST_LOG=warn $pin "$BIN" serve --port "$port" --dir "$WORK/data-$kind" "${extra[@]}" \
      >"$WORK/$kind.log" 2>&1 &
  else
    local p=(--save '' --appendonly no)
    [ "$persist" != off ] && p=(--save '' --appendonly yes --appendfsync "$persist")
    $pin redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/data-$kind" "${p[@]}" \
      >"$WORK/$kind.log" 2>&1 &
  fi
  echo $!
}

# bench LAYOUT PIPE PORT -> CSV lines "test,rps,p99"
bench() {
  local layout=$1 pipe=$2 port=$3 pin=""
  [ "$layout" = pinned ] && pin="taskset -c 0"
  $pin redis-benchmark -p "$port" -t "$TESTS" -n "$N" -r "$R" -c "$C" -P "$pipe" --csv 2>/dev/null |
    python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    name = d["test"].split()[0]
    print(name + "," + d["rps"] + "," + d["p99_latency_ms"])'
}

median() { sort -g | awk '{a[NR]=$1} END {printf "%.3f\n", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

if [ -z "$ONLY" ] || [ "$ONLY" = tput ]; then
  echo "# percore serve vs redis-server $(redis-server --version | awk '{print $3}'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, build $(git rev-parse --short HEAD)"
  echo "# redis-benchmark -n $N -r $R -c $C; median of $ROUNDS rounds (servers alternated)"
  for persist in $PERSIST; do
    for layout in $LAYOUTS; do
      for pipe in $PIPES; do
        : >"$WORK/res"
        for round in $(seq "$ROUNDS"); do
          for kind in percore redis; do
            port=$(free_port)
            pid=$(start_server $kind "$layout" "$persist" "$port")
            wait_port "$port"
            bench "$layout" "$pipe" "$port" | sed "s/^/$kind,/" >>"$WORK/res"
            kill "$pid"; wait "$pid" 2>/dev/null || true
          done
        done
        echo
        echo "## persistence $persist, layout $layout, -P $pipe"
        printf '%-8s %12s %12s %7s %9s %9s\n' test "ours rps" "redis rps" ratio "p99 ours" "p99 redis"
        for t in $(cut -d, -f2 "$WORK/res" | awk '!seen[$0]++'); do
          o=$(grep "^percore,$t," "$WORK/res" | cut -d, -f3 | median)
          r=$(grep "^redis,$t," "$WORK/res" | cut -d, -f3 | median)
          po=$(grep "^percore,$t," "$WORK/res" | cut -d, -f4 | median)
          pr=$(grep "^redis,$t," "$WORK/res" | cut -d, -f4 | median)
          printf '%-8s %12.0f %12.0f %6.2fx %9s %9s\n' "$t" "$o" "$r" "$(echo "$o / $r" | bc -l)" "$po" "$pr"
        done
      done
    done
  done
fi

if [ "$ONLY" = scaling ]; then
  # The 1 -> N worker curve against one redis-server (Dragonfly's published shape is the
  # reference): redis-benchmark with THREADS threads and 4x the clients, -P 16, GET and SET.
  # Meant for a machine with more cores than this one (e.g. the 16-core device machine).
  THREADS=${THREADS:-4}
  WORKERS=${WORKERS:-"1 2 4 8 12"}
  echo
  echo "## scaling: redis-benchmark --threads $THREADS -c $((C * 4)) -P 16 -t set,get, $(nproc) CPUs"
  printf '%-14s %12s %12s\n' server "SET rps" "GET rps"
  run_scaling() { # name port
    redis-benchmark -p "$2" --threads "$THREADS" -t set,get -n "$N" -r "$R" -c $((C * 4)) -P 16 --csv 2>/dev/null |
      python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
d = {r[0].split()[0]: r[1] for r in rows[1:]}
print("%-14s %12s %12s" % (sys.argv[1], d.get("SET"), d.get("GET")))' "$1"
  }
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
  pid=$!; wait_port "$port"; run_scaling redis "$port"; kill "$pid"; wait "$pid" 2>/dev/null || true
  for w in $WORKERS; do
    port=$(free_port)
    RUST_LOG=warn "$BIN" serve --port "$port" --workers "$w" --appendonly no >"$WORK/p.log" 2>&1 &
    pid=$!; wait_port "$port"; run_scaling "percore x$w" "$port"; kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  exit 0
fi

if [ -z "$ONLY" ] || [ "$ONLY" = memory ]; then
  echo
  echo "## memory: 1,000,000 keys of 16 bytes with 100-byte values, persistence off"
  python3 -c '
import sys
v = "x" * 100
out = sys.stdout.buffer
for i in range(1000000):
    k = "key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n" % (k.encode(), v.encode()))
' >"$WORK/load.resp"
  printf '%-8s %14s %14s %10s\n' server used_memory rss_bytes keys
  for kind in percore redis; do
    port=$(free_port)
    pid=$(start_server $kind unpinned off "$port")
    wait_port "$port"
    redis-cli -p "$port" --pipe <"$WORK/load.resp" >/dev/null
    used=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1=="used_memory"{print $2}')
    keys=$(redis-cli -p "$port" dbsize)
    rss=$(awk '/VmRSS/{print $2*1024}' "/proc/$pid/status")
    printf '%-8s %14s %14s %10s\n' "$kind" "$used" "$rss" "$keys"
    eval "rss_$kind=$rss"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  echo "RSS ratio ours/redis: $(echo "$rss_percore / $rss_redis" | bc -l | cut -c1-5)"
fi

#!/usr/bin/env bash
# 4 KiB O_DIRECT random reads and writes, percore's file API (io_uring) next to fio's io_uring engine, on
# the same file on a block-backed filesystem (never tmpfs), at queue depth 1 and 32,
# alternating the two in each round, both on CPU $CPU (taskset): which CPU takes the disk's
# interrupts moves depth-1 latency by a quarter here, so the two must share one. Latency is
# end to end for both: ours from the call to the awaited result, fio's `lat` (submission +
# completion, `--lat_percentiles=1`), not fio's `clat`, which leaves the submission out.
# Prints IOPS, p50, p99 and the ratios ours / fio.
#   FILE=target/dio-bench.dat SIZE=1G SECS=10 ROUNDS=2 CPU=0 RW="randread randwrite" bash benches/storage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${FILE:-target/dio-bench.dat}
SIZE=${SIZE:-1G}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
CPU=${CPU:-0}
command -v fio >/dev/null || { echo "fio is needed (apt-get install fio)"; exit 1; }
cargo build --release --example dio_bench -q
fio --name=layout --filename="$FILE" --size="$SIZE" --rw=write --bs=1M --direct=1 \
  --ioengine=io_uring --output=/dev/null
fs=$(stat -f -c %T "$(dirname "$FILE")")
echo "file $FILE ($SIZE) on $fs; $SECS s per run; $ROUNDS rounds; both on CPU $CPU"
fio_run() { # $1 depth, $2 randread|randwrite
  taskset -c "$CPU" fio --name=rr --filename="$FILE" --size="$SIZE" --rw="$2" --bs=4k --direct=1 \
    --ioengine=io_uring --iodepth="$1" --lat_percentiles=1 --time_based --runtime="$SECS" --output-format=json |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["'"${2#rand}"'"]; p=j["lat_ns"]["percentile"];
print(json.dumps({"iops": round(j["iops"]), "p50_us": p["50.000000"]/1e3, "p99_us": p["99.000000"]/1e3}))'
}
ours_run() { # $1 depth, $2 randread|randwrite
  local w=""; [ "$2" = randwrite ] && w=--write
  taskset -c "$CPU" target/release/examples/dio_bench --file "$FILE" --qd "$1" --secs "$SECS" $w
}
for rw in ${RW:-randread randwrite}; do
for qd in 1 32; do
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then f=$(fio_run "$qd" "$rw"); o=$(ours_run "$qd" "$rw"); else o=$(ours_run "$qd" "$rw"); f=$(fio_run "$qd" "$rw"); fi
    python3 - "$qd" "$r" "$o" "$f" "$rw" <<'PY'
import json, sys
qd, r, o, f, rw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
print(f"{rw} qd {qd:>2} round {r}: percore {o['iops']:>8} IOPS p50 {o['p50_us']:.1f} µs p99 {o['p99_us']:.1f} µs | "
      f"fio {f['iops']:>8} IOPS p50 {f['p50_us']:.1f} µs p99 {f['p99_us']:.1f} µs | "
      f"ratio IOPS {o['iops']/f['iops']:.2f}, p50 {o['p50_us']/f['p50_us']:.2f}")
PY
  done
done
done

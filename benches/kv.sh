#!/usr/bin/env bash
# percore's key-value shard next to fjall and redb (benches/kv-peers, its own workspace so CI
# never builds the peers): same keys, values and batches in the same run, on the work tree's
# filesystem. Extra arguments go to the benchmark (--keys N, --rounds R, --dir DIR).
set -euo pipefail
cd "$(dirname "$0")/kv-peers"
cargo build --release -q
exec target/release/percore-kv-bench --dir ../../target/kv-bench-data "$@"

#!/usr/bin/env bash
# percore's ML building blocks next to PyTorch, scikit-learn and numpy (OpenBLAS), one thread
# each, same shapes, alternating which runs first in each round; prints every figure and the
# ratio ours / peer (for times: lower is better for us; for GFLOP/s: higher). The peers need
# a venv outside the repo (never CI):
#   python3 -m venv ../venv-ml && ../venv-ml/bin/pip install torch scikit-learn
#   VENV=../venv-ml ROUNDS=2 bash benches/ml.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-../venv-ml}
ROUNDS=${ROUNDS:-2}
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (see the header of this script)"; exit 1; }
cargo build --release --example ml_bench -q
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ours() { target/release/examples/ml_bench --reps 5 --out target/ml-bench-adam.f32; }
peer() { "$VENV/bin/python" benches/peers/ml_peers.py --adam-check target/ml-bench-adam.f32; }
tmp=$(mktemp -d)
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then ours > "$tmp/ours$r"; peer > "$tmp/peer$r"; else peer > "$tmp/peer$r"; ours > "$tmp/ours$r"; fi
done
python3 - "$tmp" "$ROUNDS" <<'PY'
import json, sys, statistics
d, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    out = {}
    for r in range(1, rounds + 1):
        for line in open(f"{d}/{name}{r}"):
            j = json.loads(line); out.setdefault(j["measure"], []).append(j["value"])
    return out
o, p = load("ours"), load("peer")
med = lambda v: statistics.median(v)
print(f"{'measure':<16} {'percore':>12} {'peer':>12} {'ratio':>8}  (rounds: ours / peer)")
pairs = [("mlp32", "mlp32", "us/step"), ("mlp256", "mlp256", "us/step"),
         ("adam10m", "adam10m_fused", "ms"), ("adam10m", "adam10m_foreach", "ms"),
         ("adam10m", "adam10m_default", "ms"), ("std1m", "std1m", "ms"), ("onehot1m", "onehot1m", "ms"),
         ("std1m_inplace", "std1m_inplace", "ms"), ("onehot1m_sparse", "onehot1m_sparse", "ms"),
         ("gemm128", "gemm128", "GFLOP/s"), ("gemm512", "gemm512", "GFLOP/s"),
         ("gemm1024", "gemm1024", "GFLOP/s"), ("gemm2048", "gemm2048", "GFLOP/s"),
         ("gemm_small", "gemm_small", "us/call")]
for a, b, unit in pairs:
    x, y = med(o[a]), med(p[b])
    # Time ratio (ours / peer) for times, throughput ratio for GFLOP/s.
    print(f"{b:<16} {x:>12.2f} {y:>12.2f} {x / y:>8.2f}  {unit}: {o[a]} / {p[b]}")
print("adam 10M, 3 steps, max rel diff vs PyTorch:", p["adam10m_check"])
PY
rm -rf "$tmp"

# The peers of benches/peers/ml_bench.rs, same shapes, one thread each (torch.set_num_threads(1),
# OPENBLAS_NUM_THREADS=1 set by benches/ml.sh before numpy loads): PyTorch for the MLP step
# and Adam (default, foreach, fused), scikit-learn for StandardScaler / OneHotEncoder, numpy
# (OpenBLAS) for sgemm. One JSON object per line, like ml_bench. With --adam-check FILE it also
# compares percore's Adam result (3 steps from the same start) with PyTorch's.
import json, sys, time, math

import numpy as np
import torch
from sklearn.preprocessing import OneHotEncoder, StandardScaler

torch.set_num_threads(1)
reps = 5
args = sys.argv[1:]
check = args[args.index("--adam-check") + 1] if "--adam-check" in args else None


def out(measure, unit, value, **kw):
    print(json.dumps({"measure": measure, "unit": unit, "value": round(value, 2), **kw}), flush=True)


def med(v):
    return sorted(v)[len(v) // 2]


# MLP forward + backward.
for batch in (32, 256):
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    x = torch.rand(batch, 64, generator=g)
    y = torch.arange(batch) % 10
    lossf = torch.nn.CrossEntropyLoss()
    steps = 2000 if batch == 32 else 500
    per = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(steps):
            net.zero_grad()
            lossf(net(x), y).backward()
        per.append((time.perf_counter() - t) * 1e6 / steps)
    out(f"mlp{batch}", "us/step", med(per))

# Adam on 10 M parameters: the same start as ml_bench (p_i = sin i, g_i = 0.01 cos 0.7 i).
n = 10_000_000
i = np.arange(n, dtype=np.float64)
p0 = torch.from_numpy(np.sin(i).astype(np.float32))
g0 = torch.from_numpy((np.cos(0.7 * i) * 0.01).astype(np.float32))
for name, kw in (("default", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
    p = torch.nn.Parameter(p0.clone())
    p.grad = g0.clone()
    opt = torch.optim.Adam([p], **kw)
    with torch.no_grad():
        for _ in range(3):
            opt.step()
    if check and name == "default":
        ours = np.fromfile(check, dtype="<f4")
        theirs = p.detach().numpy()
        rel = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-3)
        out("adam10m_check", "max rel diff", float(rel.max()), elements=int(n))
    per = []
    for _ in range(reps):
        t = time.perf_counter()
        opt.step()
        per.append((time.perf_counter() - t) * 1e3)
    out(f"adam10m_{name}", "ms/step", med(per))

# Preprocessing on 1 M rows.
rng = np.random.default_rng(5)
rows = 1_000_000
x = rng.normal(1.0, 3.0, size=(rows, 10))
idx = np.arange(rows)
cats = np.stack([np.char.add("c", (idx % 10).astype(str)), np.char.add("k", ((idx * 7919) % 100).astype(str))], axis=1).astype(object)
s_ms, o_ms = [], []
for _ in range(3):
    t = time.perf_counter()
    StandardScaler().fit_transform(x)
    s_ms.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    OneHotEncoder(sparse_output=False).fit_transform(cats)
    o_ms.append((time.perf_counter() - t) * 1e3)
out("std1m", "ms", med(s_ms))
out("onehot1m", "ms", med(o_ms))
si_ms, os_ms = [], []
for _ in range(3):
    xi = x.copy()
    t = time.perf_counter()
    StandardScaler(copy=False).fit_transform(xi)
    si_ms.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    OneHotEncoder().fit_transform(cats)  # sparse CSR, the default
    os_ms.append((time.perf_counter() - t) * 1e3)
out("std1m_inplace", "ms", med(si_ms))
out("onehot1m_sparse", "ms", med(os_ms))

# sgemm (OpenBLAS through numpy), one thread.
for n in (128, 512, 1024, 2048):
    a = (np.arange(n * n) % 7 * 0.1).astype(np.float32).reshape(n, n)
    b = (np.arange(n * n) % 5 * 0.2).astype(np.float32).reshape(n, n)
    iters = int(min(max(4e9 / (2 * n ** 3), 1), 2000))
    g = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        g.append(2 * n ** 3 * iters / (time.perf_counter() - t) / 1e9)
    out(f"gemm{n}", "GFLOP/s", med(g))
a = np.full((32, 64), 0.5, dtype=np.float32)
b = np.full((64, 128), 0.25, dtype=np.float32)
per = []
for _ in range(reps):
    t = time.perf_counter()
    for _ in range(20000):
        a @ b
    per.append((time.perf_counter() - t) * 1e6 / 20000)
out("gemm_small", "us/call", med(per))

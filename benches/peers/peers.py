"""Peers of squish's compression passes: what a user would pick instead
(PyTorch, numpy, scikit-learn), on the same work as `benches/passes.rs`.

Adapted from ../shared/peers/peers.py (which also times the serving kernels).

Run:   python3 benches/peers/peers.py [threads] [section ...] [--json FILE]
       sections: prune svd kmeans quant (default: these four), gemm
       (4096² linear at batch 8, 16, 64, 256: f32 and dynamic int8; run by
       `cargo bench --bench gemm64`)
       linear (4096² at batch 1 and 64, hot and cold; run by
       `cargo bench --bench roofline`)
       sweep (the shapes and batches of `benches/batch_sweep.rs`, f32 and
       dynamic int8 Linear; run with 1 thread beside that bench)
Needs: numpy, torch, scikit-learn (e.g. /work/venv/bin/python).

`cargo bench --bench passes` runs this script itself in the same sitting when
SQUISH_PEER_PYTHON names a Python interpreter, and prints both side by side.
PyTorch on 2 threads collapses when anything else runs: record `uptime`.
Prints one JSON object (times in ms are medians)."""
import json
import sys
import time

import numpy as np
import torch

args = [a for a in sys.argv[1:]]
out_file = None
if "--json" in args:
    i = args.index("--json")
    out_file = args[i + 1]
    del args[i:i + 2]
threads = int(args[0]) if args and args[0].isdigit() else 2
sections = [a for a in args if not a.isdigit()] or ["prune", "svd", "kmeans", "quant"]
torch.set_num_threads(threads)


def med(f, n=5, warm=1):
    for _ in range(warm):
        f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


rng = np.random.default_rng(0)
out = {"threads": threads, "loadavg_start": open("/proc/loadavg").read().split()[:3]}

if "prune" in sections:
    # 90 % magnitude pruning of 16M weights: PyTorch's pruning utility, the
    # bare threshold (numpy partition), and torch to a CSR tensor.
    import torch.nn.utils.prune as prune
    w = torch.randn(4096, 4096)

    def do_prune():
        l = torch.nn.Linear(4096, 4096, bias=False)
        l.weight.data = w.clone()
        prune.l1_unstructured(l, "weight", amount=0.9)
        prune.remove(l, "weight")
        return l.weight

    out["torch_l1_unstructured_16M_90pct_ms"] = med(do_prune, n=3) * 1e3

    def torch_csr():
        a = w.abs().flatten()
        k = int(0.9 * a.numel())
        t = torch.kthvalue(a, k).values
        return (w * (w.abs() > t)).to_sparse_csr()

    out["torch_kthvalue_to_csr_16M_90pct_ms"] = med(torch_csr, n=3) * 1e3
    wn = w.numpy()
    out["numpy_partition_threshold_16M_ms"] = med(
        lambda: np.partition(np.abs(wn).ravel(), int(0.9 * wn.size)), n=3) * 1e3

if "svd" in sections:
    # Exact thin SVD and rank-64 randomized SVD (q = 64 + 10 columns, 2 power
    # iterations: squish's defaults) at 2048²; relative Frobenius error of the
    # rank-64 result on a Gaussian and on a decaying-spectrum matrix (columns
    # scaled by 1 / (1 + j/32), as in benches/passes.rs).
    m = 2048
    torch.manual_seed(0)
    a = torch.randn(m, m)
    decay = a * (1.0 / (1.0 + torch.arange(m, dtype=torch.float32) / 32.0))
    out[f"torch_svd_full_{m}_ms"] = med(lambda: torch.linalg.svd(a, full_matrices=False), n=3) * 1e3
    out[f"torch_svd_lowrank64_{m}_ms"] = med(lambda: torch.svd_lowrank(a, q=64 + 10, niter=2), n=5) * 1e3
    for name, x in [("gaussian", a), ("decay", decay)]:
        u, s, v = torch.svd_lowrank(x, q=64 + 10, niter=2)
        r = (u[:, :64] * s[:64]) @ v[:, :64].T
        out[f"torch_svd_lowrank64_{m}_{name}_relerr"] = float(torch.linalg.norm(x - r) / torch.linalg.norm(x))
        sv = torch.linalg.svdvals(x.double())
        out[f"best_rank64_{m}_{name}_relerr"] = float(torch.sqrt((sv[64:] ** 2).sum() / (sv ** 2).sum()))

if "kmeans" in sections:
    # 1-D k-means on 1M standard-normal weights (scikit-learn, n_init = 1).
    from sklearn.cluster import KMeans
    x = rng.standard_normal(1_000_000).astype(np.float32).reshape(-1, 1)
    for k in (16, 256):
        km = KMeans(n_clusters=k, n_init=1, random_state=0, max_iter=100)
        t = time.perf_counter()
        km.fit(x)
        t = time.perf_counter() - t
        out[f"sklearn_kmeans_1M_k{k}_ms"] = t * 1e3
        out[f"sklearn_kmeans_1M_k{k}_sse"] = float(km.inertia_)

if "quant" in sections:
    w = torch.randn(4096, 4096)
    wn = w.numpy()

    def np_q():
        s = np.abs(wn).max(axis=1, keepdims=True) / 127
        return np.clip(np.rint(wn / s), -127, 127).astype(np.int8)

    out["numpy_int8_perrow_16M_ms"] = med(np_q, n=5) * 1e3

if "gemm" in sections:
    # 4096 x 4096 linear at GEMM batch sizes: f32 (torch.nn.functional.linear,
    # MKL/oneDNN) and dynamic int8 (torch.ao.quantization.quantize_dynamic,
    # fbgemm: per-row int8 activations x int8 weights, VNNI where available).
    # Keys gemm_<batch>_{f32,dyn_int8}_ms.
    import torch.ao.quantization as tq
    lin = torch.nn.Linear(4096, 4096, bias=False)
    qlin = tq.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    w = lin.weight.detach()
    with torch.inference_mode():
        for b in (8, 16, 64, 256):
            x = torch.randn(b, 4096)
            n = 9 if b <= 64 else 5
            out[f"gemm_{b}_f32_ms"] = med(lambda: torch.nn.functional.linear(x, w), n=n, warm=2) * 1e3
            out[f"gemm_{b}_dyn_int8_ms"] = med(lambda: qlin(x), n=n, warm=2) * 1e3

if "linear" in sections:
    # 4096² Linear at batch 1 and 64 (benches/roofline.rs): f32
    # (torch.nn.functional.linear) and dynamic int8 (quantize_dynamic), hot
    # (one layer, called again and again) and cold (cycling over copies of
    # the weights totalling >= 128 MiB, so each call reads from DRAM).
    n = 4096
    torch.manual_seed(21)
    w = torch.empty(n, n).uniform_(-0.1, 0.1)
    f32_copies = [w.clone() for _ in range(-(-(128 << 20) // (n * n * 4)) + 1)]

    def dynq():
        lin = torch.nn.Linear(n, n, bias=False).eval()
        lin.weight.data = w.clone()
        return torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)

    q_copies = [dynq() for _ in range(-(-(128 << 20) // (n * n)) + 1)]

    def med_cycle(f, copies, n_calls):
        # Median of single calls, each on the next copy (one untimed first).
        f(copies[0])
        ts = []
        for i in range(1, n_calls + 1):
            c = copies[i % len(copies)]
            t = time.perf_counter()
            f(c)
            ts.append(time.perf_counter() - t)
        return sorted(ts)[len(ts) // 2]

    # The DRAM read rate beside each cold run (the mean of one just before
    # and one just after): a 512 MiB sum on the peer's threads. Other
    # tenants' share of the memory bus drifts within a sitting, so each
    # cold time is read against the rate of its own moment.
    big = torch.ones((128 << 20,))

    def dram_gbs():
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            big.sum()
            ts.append(time.perf_counter() - t)
        return big.numel() * 4 / sorted(ts)[1] / 1e9

    def cold(key, f, copies, n_calls):
        before = dram_gbs()
        out[f"{key}_cold_ms"] = med_cycle(f, copies, n_calls) * 1e3
        out[f"{key}_cold_dram_gbs"] = 0.5 * (before + dram_gbs())

    with torch.no_grad():
        for b in (1, 64):
            x = torch.empty(b, n).uniform_(-1.0, 1.0)
            lin = lambda wt: torch.nn.functional.linear(x, wt)
            qf = lambda m: m(x)
            out[f"torch_linear_f32_b{b}_hot_ms"] = med_cycle(lin, f32_copies[:1], 41) * 1e3
            cold(f"torch_linear_f32_b{b}", lin, f32_copies, 21)
            out[f"torch_linear_dynq_int8_b{b}_hot_ms"] = med_cycle(qf, q_copies[:1], 41) * 1e3
            cold(f"torch_linear_dynq_int8_b{b}", qf, q_copies, 41)

if "sweep" in sections:
    # The shapes and batches of `benches/batch_sweep.rs` (run with 1 thread,
    # like the sweep): torch.nn.functional.linear in f32 and the dynamic
    # int8 Linear (fbgemm). Keys sweep_<rows>x<cols>_b<batch>_{f32,dynq}_us:
    # medians of 5 bursts of ~5 ms, per call.
    import torch.ao.quantization as tq

    def per_call(f):
        f()
        t = time.perf_counter()
        f()
        one = max(time.perf_counter() - t, 1e-7)
        reps = max(1, int(5e-3 / one))
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                f()
            ts.append((time.perf_counter() - t) / reps)
        return sorted(ts)[2]

    torch.manual_seed(20)
    with torch.inference_mode():
        for rows, cols in ((384, 384), (1536, 384), (384, 1536), (300, 784), (100, 300)):
            lin = torch.nn.Linear(cols, rows, bias=False).eval()
            lin.weight.data.uniform_(-0.1, 0.1)
            qlin = tq.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
            w = lin.weight.detach()
            for b in (1, 2, 4, 8, 16, 64, 256):
                x = torch.empty(b, cols).uniform_(-1.0, 1.0)
                key = f"sweep_{rows}x{cols}_b{b}"
                out[key + "_f32_us"] = per_call(lambda: torch.nn.functional.linear(x, w)) * 1e6
                out[key + "_dynq_us"] = per_call(lambda: qlin(x)) * 1e6

out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
text = json.dumps(out, indent=1)
if out_file:
    with open(out_file, "w") as f:
        f.write(text)
print(text)

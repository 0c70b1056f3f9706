"""
PyTorch's CPU BatchNorm on the benchmark shapes, for comparison with bnpool's table
(bench/RESULTS.md). Not part of `npm run bench`: CI and the Node suite have no Python.

    python3 bench/torch/bench_torch.py [threads ...]     # default: 1 2

For each shape and thread count (torch.set_num_threads): training forward (F.batch_norm with
running statistics, momentum 0.1), eval forward, and backward (autograd through a training
forward, dx, dWeight and dBias; timed alone), plus a channels-last training forward of A and C
(torch.channels_last memory format). The forwards are measured twice: as F.batch_norm, which
allocates its output every call (modes `train`, `eval`), and as aten's native_batch_norm.out
into an output, mean and invstd allocated once (`train-out`, `eval-out`: the kernel alone, as
bnpool's zero-copy calls with `out`). A fresh output's page faults cost from nothing to most of a
call, as the C allocator happens to reuse memory or not (B's eval at 2 threads: 2.5 ms in one
run of this script and 21 ms in the next). Medians of 15 calls after 3 untimed ones; GB/s counts
one read and one write of the tensor, as bnpool's table does. Writes bench/torch/results.json.
"""
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = [
    ("A", [32, 64, 112, 112]),
    ("B", [256, 256, 14, 14]),
    ("C", [64, 3, 224, 224]),
    ("D", [8, 16, 32, 32]),
    ("E", [4096, 1024]),
]
WARMUP = 3
RUNS = 15


def median_ms(fn):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(shape, channels_last=False):
    C = shape[1]
    g = torch.Generator().manual_seed(1234567)
    x = torch.randn(shape, generator=g) * 0.8 + (torch.arange(C) % 7 - 3).reshape([1, C] + [1] * (len(shape) - 2))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.rand(C, generator=g) + 0.5
    bias = torch.randn(C, generator=g)
    rm, rv = torch.zeros(C), torch.ones(C)
    out = {}
    y = torch.empty_like(x)
    save_mean, save_invstd = torch.empty(C), torch.empty(C)

    def into(training):
        return lambda: torch.ops.aten.native_batch_norm.out(
            x, weight, bias, rm, rv, training, 0.1, 1e-5, out=y, save_mean=save_mean, save_invstd=save_invstd)

    with torch.no_grad():
        out["train"] = median_ms(lambda: F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5))
        out["train-out"] = median_ms(into(True))
        if not channels_last:
            out["eval"] = median_ms(lambda: F.batch_norm(x, rm, rv, weight, bias, training=False, eps=1e-5))
            out["eval-out"] = median_ms(into(False))
    if not channels_last:
        xg = x.clone().requires_grad_(True)
        wg = weight.clone().requires_grad_(True)
        bg = bias.clone().requires_grad_(True)
        dy = torch.randn(shape, generator=g)

        def backward():
            y = F.batch_norm(xg, rm.clone(), rv.clone(), wg, bg, training=True, momentum=0.1, eps=1e-5)
            t0 = time.perf_counter()
            torch.autograd.grad(y, [xg, wg, bg], dy)
            return (time.perf_counter() - t0) * 1e3

        for _ in range(WARMUP):
            backward()
        out["backward"] = statistics.median(backward() for _ in range(RUNS))
    return out


def main():
    threads = [int(t) for t in sys.argv[1:]] or [1, 2]
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        for sid, shape in SHAPES:
            layouts = [False, True] if sid in ("A", "C") else [False]
            for cl in layouts:
                r = bench(shape, cl)
                nbytes = 2 * 4 * torch.Size(shape).numel()
                for mode, ms in r.items():
                    rows.append({"shape": sid, "dims": shape, "layout": "channels-last" if cl else "channels-first",
                                 "mode": mode, "threads": t, "median_ms": round(ms, 3), "gbps": round(nbytes / ms / 1e6, 1)})
                    print(f"{sid} {'NHWC' if cl else 'NCHW'} {mode:9s} threads {t}: {ms:9.3f} ms {nbytes / ms / 1e6:6.1f} GB/s", flush=True)
    result = {
        "generator": f"PyTorch {torch.__version__} ({torch.__config__.parallel_info().splitlines()[0]})",
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

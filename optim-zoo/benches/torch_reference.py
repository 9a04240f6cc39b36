#!/usr/bin/env python3
"""PyTorch's optimizer step times on the sizes our benchmarks use, for comparison.

Times one `optimizer.step()` of torch.optim.Adam, AdamW and SGD (momentum 0.9) on CPU,
f32, in PyTorch's three implementations:

  single   foreach=False, fused=False  a Python loop over tensors, several passes each
  foreach  foreach=True                 multi-tensor ops (torch._foreach_*), still one
                                        pass per operation, with intermediates
  fused    fused=True                   one fused kernel per tensor (CPU: torch >= 2.4)

on one tensor of 64K, 1M, 4M and 16M elements and on 1024 tensors of 4096 elements,
with 1 and 2 threads (torch.set_num_threads). Hyperparameters are PyTorch's defaults
(lr 1e-3; AdamW weight decay 1e-2), as in our registry's defaults.

Usage (needs torch; nothing here is needed by the Rust build or tests):

    python3 optim-zoo/benches/torch_reference.py                 # everything
    python3 optim-zoo/benches/torch_reference.py --algo adam --sizes 4194304 --threads 1
    python3 optim-zoo/benches/torch_reference.py --many          # only 1024 x 4096

Each line: algo, implementation, shape, threads, best time per step (and the median)
over interleaved rounds, ns per element, and GB/s for the bytes the update must move
(read w, g and each state; write w and each state; f32). Compare with

    cargo run --release -q -p optim-zoo --example step_bench -- adam 4194304 1

whose numbers are measured the same way (best over rounds, per step, after warm-up),
or run vs_torch.py, which alternates the two in one run and prints the ratios.
"""

import argparse
import statistics
import sys
import time

try:
    import torch
except ImportError:  # pragma: no cover - the point of the message
    sys.exit("torch_reference.py needs PyTorch: pip install torch (CPU build is enough)")

ALGOS = {
    # name: (constructor, states per parameter)
    "adam": (lambda ps, **kw: torch.optim.Adam(ps, lr=1e-3, **kw), 2),
    "adamw": (lambda ps, **kw: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2, **kw), 2),
    "sgd-momentum": (lambda ps, **kw: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, **kw), 1),
}
IMPLS = {
    "single": dict(foreach=False),
    "foreach": dict(foreach=True),
    "fused": dict(fused=True),
}
SIZES = [1 << 16, 1 << 20, 1 << 22, 1 << 24]
MANY = (1024, 4096)


def make_params(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for n in shapes:
        p = torch.nn.Parameter(torch.rand(n, generator=gen, dtype=torch.float32) * 2 - 1)
        p.grad = torch.rand(n, generator=gen, dtype=torch.float32) * 2 - 1
        params.append(p)
    return params


def time_steps(opt, elems, rounds=9, slice_s=0.06):
    """Best and median seconds per step over interleaved rounds of about slice_s."""
    for _ in range(2):  # warm-up: states allocated, pages touched
        opt.step()
    t0 = time.perf_counter()
    opt.step()
    one = max(time.perf_counter() - t0, 1e-9)
    k = max(1, min(100_000, int(slice_s / one)))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(k):
            opt.step()
        times.append((time.perf_counter() - t0) / k)
    return min(times), statistics.median(times)


def run(algo, impl, shapes, threads):
    make, n_states = ALGOS[algo]
    torch.set_num_threads(threads)
    params = make_params(shapes)
    try:
        opt = make(params, **IMPLS[impl])
        with torch.no_grad():
            best, median = time_steps(opt, sum(shapes))
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. fused not available
        return f"{algo:<13} {impl:<8} unavailable: {e}".splitlines()[0]
    elems = sum(shapes)
    nbytes = (3 + 2 * n_states) * 4 * elems
    shape = f"{len(shapes)}x{shapes[0]}" if len(shapes) > 1 else f"1x{shapes[0]}"
    return (
        f"{algo:<13} {impl:<8} {shape:>12} {threads:>2}t "
        f"best {best * 1e6:>11.1f} µs  median {median * 1e6:>11.1f} µs  "
        f"{best * 1e9 / elems:>7.4f} ns/elem  {nbytes / best / 1e9:>6.1f} GB/s"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--algo", choices=sorted(ALGOS), action="append")
    ap.add_argument("--impl", choices=sorted(IMPLS), action="append")
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--many", action="store_true", help="only 1024 tensors x 4096")
    args = ap.parse_args()
    algos = args.algo or list(ALGOS)
    impls = args.impl or list(IMPLS)
    cases = [[MANY[1]] * MANY[0]] if args.many else [[n] for n in args.sizes] + [[MANY[1]] * MANY[0]]
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads available, f32, CPU")
    for algo in algos:
        for shapes in cases:
            for threads in args.threads:
                for impl in impls:
                    print(run(algo, impl, shapes, threads), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Our generated step against PyTorch's fused step, in one run on one machine.

For each case, alternates `step_bench` (our kernel through the public API) and
PyTorch's `fused=True` optimizer (timed by torch_reference.py's `time_steps`),
ROUNDS times, and keeps each side's best time per step: both sides see the same
machine state, in turn. Prints one line per case with the ratio ours / torch
(below 1: ours is faster).

    cargo build --release -p optim-zoo --example step_bench
    python3 optim-zoo/benches/vs_torch.py            # needs torch (pip install torch)
    python3 optim-zoo/benches/vs_torch.py --rounds 5 --case adam:4194304:1

A case is ALGO:N:THREADS (our registry name; `-many` = N/4096 tensors of 4096).
"""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402  (exits with a message when torch is missing)

torch = ref.torch

# Our registry name -> torch_reference's algorithm name.
TORCH_NAME = {"adam": "adam", "adamw": "adamw", "momentum": "sgd-momentum"}
CASES = [
    "adam:4194304:1",
    "adamw:4194304:1",
    "momentum:4194304:1",
    "adam:16777216:1",
    "adam:16777216:2",
    "adam-many:4194304:1",
    "adam-many:4194304:2",
]
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "..", "..", "target", "release", "examples", "step_bench")


def ours(algo, n, threads):
    """Best µs per step of our generated kernel (step_bench's first variant)."""
    out = subprocess.run([BIN, algo, str(n), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    rows = [l for l in out.splitlines() if l and not l.startswith(("#", "variant", "ns_"))]
    return float(re.split(r"\s{2,}", rows[0].strip())[1])


def theirs(algo, n, threads):
    """Best µs per step of torch's fused optimizer on the same shapes."""
    base = algo.removesuffix("-many")
    shapes = [4096] * (n // 4096) if algo.endswith("-many") else [n]
    make, _ = ref.ALGOS[TORCH_NAME[base]]
    torch.set_num_threads(threads)
    params = ref.make_params(shapes)
    opt = make(params, fused=True)
    with torch.no_grad():
        best, _ = ref.time_steps(opt, n)
    return best * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", action="append", help="ALGO:N:THREADS (repeatable)")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"build it first: cargo build --release -p optim-zoo --example step_bench ({BIN})")
    print(f"# torch {torch.__version__} fused vs our generated step; best of {args.rounds} "
          f"alternating rounds; f32; µs per step")
    print(f"{'case':<24} {'ours µs':>10} {'torch µs':>10} {'ours/torch':>11}")
    for case in args.case or CASES:
        algo, n, threads = case.split(":")
        n, threads = int(n), int(threads)
        a = b = float("inf")
        for _ in range(args.rounds):
            a = min(a, ours(algo, n, threads))
            b = min(b, theirs(algo, n, threads))
        print(f"{case:<24} {a:>10.1f} {b:>10.1f} {a / b:>10.2f}x", flush=True)


if __name__ == "__main__":
    main()

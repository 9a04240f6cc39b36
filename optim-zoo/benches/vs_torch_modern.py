#!/usr/bin/env python3
"""Our generated LAMB, NovoGrad, Adafactor, Muon, NAdam, RAdam, RMSprop, Rprop and ASGD steps
against PyTorch's, in one run.

Like vs_torch.py: for each case, alternates `step_bench` (our kernel through the public
API, its first variant) and each PyTorch implementation of the same step on the same
shapes (timed by torch_reference.py's `time_steps`: best time per step over rounds),
ROUNDS times, and keeps each side's best: both sides see the same machine state, in turn.
Prints one line per PyTorch implementation with the speed-up torch / ours (above 1: ours
is faster), and the best time of step_bench's bandwidth probe in the same rounds (the
probe moves the bytes the step must move with one add per element; "-" when step_bench
has no probe for the case).

    cargo build --release -p optim-zoo --example step_bench
    /work/venv/bin/python optim-zoo/benches/vs_torch_modern.py       # needs torch, pytorch_optimizer
    /work/venv/bin/python optim-zoo/benches/vs_torch_modern.py --rounds 5 --case muon:1024x1024:1
    /work/venv/bin/python optim-zoo/benches/vs_torch_modern.py --elementwise   # the five below only

A case is ALGO:SHAPE:THREADS (our registry name; SHAPE is N or ROWSxCOLS). What each is
compared with (f32, CPU; hyperparameters are each library's defaults, which for the
shapes here make the same kind of work; the update rules differ in details, noted):

  lamb       pytorch_optimizer.Lamb, foreach=False and foreach=True (its default on CPU).
             Its default rule differs from ours (optax.lamb): no bias correction,
             ‖w‖ clamped at 10, ε added to ‖u‖; the passes over memory are the same kind.
  novograd   pytorch_optimizer.NovoGrad, foreach=False and True (its default). It divides
             the gradient in place (as its source does).
  adafactor  torch.optim.Adafactor, foreach=False and foreach=True (our rule is its rule).
  muon       the five Newton-Schulz iterations of torch.optim.Muon done in f32 with torch's
             matmul (torch.optim.Muon itself runs them in bfloat16; its step is shown too,
             for information); torch.set_num_threads(THREADS) as for every case.
  nadam, radam, rmsprop, rprop, asgd
             torch.optim.NAdam, RAdam, RMSprop, Rprop, ASGD (torch has no fused kernel for
             them), foreach=False (what foreach=None resolves to for CPU tensors: torch's
             foreach kernels are for CUDA-like devices only) and foreach=True. Both sides
             use torch's default hyperparameters (our registry defaults are the same
             values); our rules follow torch.optim's (see optim-zoo/src).
"""

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402  (exits with a message when torch is missing)

torch = ref.torch
try:
    import pytorch_optimizer as po
    PO_VERSION = importlib.metadata.version("pytorch_optimizer")
except ImportError:  # pragma: no cover
    po, PO_VERSION = None, "not installed"

CASES = [
    "lamb:4194304:1",
    "novograd:4194304:1",
    "adafactor:2048x2048:1",
    "muon:1024x1024:1",
    "nadam:4194304:1",
    "radam:4194304:1",
    "rmsprop:4194304:1",
    "rprop:4194304:1",
    "asgd:4194304:1",
]
# Our registry name -> torch.optim class, for the element-wise optimizers without a fused
# torch kernel (issue 14: at least 3x faster than torch's own implementation).
TORCH_ELEMENTWISE = {"nadam": "NAdam", "radam": "RAdam", "rmsprop": "RMSprop",
                     "rprop": "Rprop", "asgd": "ASGD"}
BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "..", "..", "target", "release", "examples", "step_bench")


def ours(algo, shape, threads, bin_=BIN):
    """Best µs per step of our generated kernel (step_bench's first variant), and of
    step_bench's probe in the same run (inf when it has none)."""
    out = subprocess.run([bin_, algo, shape, str(threads)], check=True,
                         capture_output=True, text=True).stdout
    rows = [re.split(r"\s{2,}", l.strip())
            for l in out.splitlines() if l and not l.startswith(("#", "variant", "ns_"))]
    probe = [float(r[1]) for r in rows if r[0].startswith("probe")]
    return float(rows[0][1]), (probe[0] if probe else float("inf"))


def dims(shape):
    return [int(d) for d in shape.split("x")]


def params_of(shape):
    """One f32 parameter of SHAPE with a gradient, values in [-1, 1)."""
    gen = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.rand(*dims(shape), generator=gen) * 2 - 1)
    p.grad = torch.rand(*dims(shape), generator=gen) * 2 - 1
    return [p]


def zeropower_f32(grad, ns_coefficients=(3.4445, -4.775, 2.0315), ns_steps=5, eps=1e-7):
    """torch.optim._muon._zeropower_via_newtonschulz without its cast to bfloat16."""
    a, b, c = ns_coefficients
    x = grad.clone()
    if grad.size(0) > grad.size(1):
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, update, x, beta=a)
    if grad.size(0) > grad.size(1):
        x = x.T
    return x


class NewtonSchulz:
    """Something with a `step()` for time_steps: the f32 Newton-Schulz iterations."""

    def __init__(self, params):
        self.g = params[0].grad

    def step(self):
        zeropower_f32(self.g)


def implementations(algo):
    """(label, constructor from params) of each PyTorch step compared with `algo`."""
    if algo == "lamb":
        if po is None:
            return [("pytorch_optimizer.Lamb", None)]
        return [(f"pytorch_optimizer.Lamb foreach={f}", lambda ps, f=f: po.Lamb(ps, foreach=f))
                for f in (False, True)]
    if algo == "novograd":
        if po is None or not hasattr(po, "NovoGrad"):
            return [("pytorch_optimizer.NovoGrad", None)]
        return [(f"pytorch_optimizer.NovoGrad foreach={f}",
                 lambda ps, f=f: po.NovoGrad(ps, foreach=f)) for f in (False, True)]
    if algo == "adafactor":
        return [(f"torch.optim.Adafactor foreach={f}",
                 lambda ps, f=f: torch.optim.Adafactor(ps, foreach=f)) for f in (False, True)]
    if algo in TORCH_ELEMENTWISE:
        cls = getattr(torch.optim, TORCH_ELEMENTWISE[algo])
        return [(f"torch.optim.{cls.__name__} foreach={f}" + (" (CPU default)" if not f else ""),
                 lambda ps, f=f, cls=cls: cls(ps, foreach=f)) for f in (False, True)]
    if algo == "muon":
        return [("torch f32 matmul, 5 Newton-Schulz iterations", NewtonSchulz),
                ("torch.optim.Muon step (bf16 NS; information)", torch.optim.Muon)]
    sys.exit(f"no PyTorch comparison for {algo}")


def theirs(make, shape, threads):
    """Best µs per step of one PyTorch implementation on the same shape."""
    torch.set_num_threads(threads)
    params = params_of(shape)
    opt = make(params)
    n = 1
    for d in dims(shape):
        n *= d
    with torch.no_grad():
        best, _ = ref.time_steps(opt, n)
    return best * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--case", action="append", help="ALGO:SHAPE:THREADS (repeatable)")
    ap.add_argument("--bin", default=BIN,
                    help="step_bench binary (default: this tree's target/release/examples)")
    ap.add_argument("--elementwise", action="store_true",
                    help="only the element-wise cases (nadam, radam, rmsprop, rprop, asgd)")
    args = ap.parse_args()
    cases = args.case or [c for c in CASES
                          if not args.elementwise or c.split(":")[0] in TORCH_ELEMENTWISE]
    if not os.path.exists(args.bin):
        sys.exit(f"build it first: cargo build --release -p optim-zoo --example step_bench "
                 f"({args.bin})")
    print(f"# torch {torch.__version__}, pytorch_optimizer {PO_VERSION}; our generated step "
          f"vs each; best of {args.rounds} alternating rounds; f32; µs per step")
    print(f"{'case':<24} {'torch implementation':<48} {'ours µs':>10} {'torch µs':>11} "
          f"{'torch/ours':>11} {'probe µs':>10}")
    for case in cases:
        algo, shape, threads = case.split(":")
        threads = int(threads)
        impls = implementations(algo)
        a = probe = float("inf")
        b = [float("inf")] * len(impls)
        for _ in range(args.rounds):
            t, p = ours(algo, shape, threads, args.bin)
            a, probe = min(a, t), min(probe, p)
            for i, (_, make) in enumerate(impls):
                if make is not None:
                    b[i] = min(b[i], theirs(make, shape, threads))
        for (label, make), t in zip(impls, b):
            if make is None:
                print(f"{case:<24} {label:<48} {a:>10.1f}   not installed (pip install "
                      f"pytorch-optimizer) or no such optimizer", flush=True)
                continue
            pr = f"{probe:>10.1f}" if probe < float("inf") else f"{'-':>10}"
            print(f"{case:<24} {label:<48} {a:>10.1f} {t:>11.1f} {t / a:>10.2f}x {pr}",
                  flush=True)


if __name__ == "__main__":
    main()

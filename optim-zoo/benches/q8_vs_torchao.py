"""AdamW with 8-bit states on CPU, one thread, 16M f32 parameters: our generated kernel
(step_bench with --state-precision q8) against torchao's AdamW8bit (torch.compile) and
bitsandbytes' AdamW8bit, in the same run.

    cargo build --release -p optim-zoo --example step_bench
    python3 optim-zoo/benches/q8_vs_torchao.py [N]

Needs torch, torchao and bitsandbytes (pip). Prints the best time per step of each and
the ratios; step_bench's own output (its f32-state step and bandwidth probe, same rounds)
is printed first.
"""

import os
import re
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 16 * 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "target", "release", "examples", "step_bench")


def ours():
    out = subprocess.run(
        [BENCH, "adamw", str(N), "1", "--state-precision", "q8"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print(out)
    line = next(l for l in out.splitlines() if l.startswith("generated, q8 states"))
    return float(re.split(r"\s{2,}", line.strip())[1]) * 1e-6


def best_step(opt, p, steps=12):
    for _ in range(3):  # warm-up: states allocated, the step compiled
        opt.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    import torch

    torch.set_num_threads(1)
    results = {"ours (generated, q8 states)": ours()}
    g = torch.rand(N) * 2 - 1

    def param():
        p = torch.nn.Parameter(torch.rand(N) * 2 - 1)
        p.grad = g.clone()
        return p

    try:
        from torchao.optim import AdamW8bit

        p = param()
        results["torchao AdamW8bit (compiled)"] = best_step(AdamW8bit([p], lr=1e-3), p)
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"torchao: {e}")
    try:
        import bitsandbytes as bnb

        p = param()
        results["bitsandbytes AdamW8bit"] = best_step(bnb.optim.AdamW8bit([p], lr=1e-3), p)
    except Exception as e:  # noqa: BLE001
        print(f"bitsandbytes: {e}")
    p = param()
    results["torch AdamW (f32 states, foreach)"] = best_step(
        torch.optim.AdamW([p], lr=1e-3, foreach=True), p
    )
    base = results["ours (generated, q8 states)"]
    print(f"# AdamW, N = {N}, one thread, CPU; best time per step")
    for name, t in results.items():
        print(f"{name:40s} {t * 1e3:9.2f} ms   {t / base:6.2f}x ours")


if __name__ == "__main__":
    main()

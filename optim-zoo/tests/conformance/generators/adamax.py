"""Generates adamax.json the way FORMAT.md describes: seeded normal parameters and
gradients, torch.optim.Adamax (single-tensor path, float64), every parameter recorded
after each step. Run: python adamax.py > ../adamax.json (needs torch)."""
import json

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(2026_12_01)
shapes = {"w": (3, 4), "b": (4,)}
hyper = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}
params = {n: torch.tensor(rng.standard_normal(s)) for n, s in shapes.items()}
start = {n: p.clone() for n, p in params.items()}
opt = torch.optim.Adamax(
    list(params.values()),
    lr=hyper["lr"],
    betas=(hyper["beta1"], hyper["beta2"]),
    eps=hyper["eps"],
    weight_decay=hyper["weight_decay"],
    foreach=False,
)
steps = []
for _ in range(40):
    grads = {n: rng.standard_normal(s) for n, s in shapes.items()}
    for n, p in params.items():
        p.grad = torch.tensor(grads[n])
    opt.step()
    steps.append({
        "grads": {n: g.ravel().tolist() for n, g in grads.items()},
        "expect": {n: p.detach().numpy().ravel().tolist() for n, p in params.items()},
    })
print(json.dumps({
    "format": 1,
    "name": "adamax",
    "optimizer": "adamax",
    "hyper": hyper,
    "dtype": "f64",
    "reference": f"torch {torch.__version__.split('+')[0]} torch.optim.Adamax (single-tensor path)",
    "params": [{"name": n, "shape": list(s), "value": start[n].numpy().ravel().tolist()}
               for n, s in shapes.items()],
    "steps": steps,
    "tolerance": {"rel": 1e-9, "abs": 1e-12},
}))

"""Open an optim-dsl checkpoint from Python with nothing but safetensors and numpy.

    pip install safetensors numpy
    cargo run -p optim-zoo --example checkpoint -- /tmp/ranger.safetensors
    python3 optim-zoo/examples/read_checkpoint.py /tmp/ranger.safetensors

Tensors are named param/<parameter>/<state> (a wrapper's inner optimizer under inner/,
a partition's route i under route/<i>/); everything else is JSON in the file's metadata.
"""

import json
import sys

from safetensors import safe_open
from safetensors.numpy import load_file

path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, framework="numpy") as f:
    meta = f.metadata()
state = json.loads(meta["state"])

print(f"format {meta['format']} v{meta['format_version']}, optimizer {meta['optimizer']}, "
      f"step {state['step']}, hyperparameters {dict(state['hyper'])}")
if state["inner"]:
    inner = state["inner"]
    print(f"inner optimizer {inner['optimizer']}, hyperparameters {dict(inner['hyper'])}")
for i, route in enumerate(state.get("routes", [])):
    print(f"route {i}: select {route['select']}, optimizer {route['state']['optimizer']}, "
          f"parameters {route['params']}")
for name in sorted(tensors):
    t = tensors[name]
    print(f"  {name}: {t.dtype} {list(t.shape)}  mean {float(t.mean()):+.6f}")

assert meta["format"] == "optim-checkpoint"
levels = [(state, "")]  # each level: its params, a wrapper's inner, a partition's routes
while levels:
    level, prefix = levels.pop()
    for p in level["params"]:
        for s in p["tensors"]:
            assert f"{prefix}param/{p['name']}/{s}" in tensors, (prefix, p["name"], s)
    if level["inner"]:
        levels.append((level["inner"], prefix + "inner/"))
    for i, route in enumerate(level.get("routes", [])):
        levels.append((route["state"], f"{prefix}route/{i}/"))
print("ok: every state the metadata lists is a tensor in the file")

"""Known answers: the digests of fixed computations, kept in ``tests/known_answers.json``.

A change of arithmetic order (a reduction's tree or chunking, a matmul's tiling, a kernel's
formula, the digest's encoding) changes these bits even when every tolerance test still
passes; ``tests/test_known_answers.py`` makes such a change a visible edit of the JSON file,
made on purpose. After a deliberate change, regenerate from the repository's root:

    python -m tests.known_answers --update     # records the current device's digests
    python -m tests.known_answers              # compares, one line per computation

The file is keyed by device: ``lavapipe`` (Mesa's CPU driver, the machine the tests run on)
and any other device under its name. On lavapipe every computation is compared, and so on a
device that has an entry of its own. On any other device only the PORTABLE computations are
compared, against lavapipe's: integer Philox draws, correctly rounded arithmetic and
fixed-order sums give the same bits everywhere; exp, tanh, division and matmul tilings need
not.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

FILE = Path(__file__).with_name("known_answers.json")
LAVAPIPE = "lavapipe"
PORTABLE = {"rand 10007", "randn 10007", "randn bfloat16 4096", "add/mul 10007", "sum 7", "sum 1000 rows of 3",
            "sum 200 rows of 5", "sum (64, 4097) axis 1", "sum 100003 (two passes)", "sum (300, 3) axis 0", "max/argmax (50, 700) axis 1"}


def device_key(info: dict) -> str:
    return LAVAPIPE if "llvmpipe" in info["device_name"].lower() else info["device_name"]


def _host(key: str, *shape, scale=1.0) -> np.ndarray:
    """Host data seeded by ``key``: the same on every machine, and adding a computation
    changes no other computation's inputs."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def compute() -> dict[str, str]:
    """Every known computation's digest on the default device, in a fixed order."""
    import hlx_vulkan as hv
    from hlx_vulkan import nn, optim
    from hlx_vulkan.checkpoint import state_digest
    from hlx_vulkan.nn import functional as F
    from hlx_vulkan.ops import matmul as mm

    d: dict[str, str] = {}
    t = hv.tensor

    hv.manual_seed(1234)
    u, z = hv.rand(10007), hv.randn(10007)
    d["rand 10007"] = u.digest()
    d["randn 10007"] = z.digest()
    d["randn bfloat16 4096"] = hv.randn(4096, dtype=hv.bfloat16).digest()
    d["add/mul 10007"] = (u * z + u).digest()

    # Sums over lengths in each band of reduce.py's workgroup sizes, one and two passes.
    d["sum 7"] = t(_host("sum 7", 7)).sum().digest()
    d["sum 200 rows of 5"] = t(_host("sum 200", 5, 200)).sum(axis=1).digest()
    d["sum (300, 3) axis 0"] = t(_host("sum 300", 300, 3)).sum(axis=0).digest()
    d["sum 1000 rows of 3"] = t(_host("sum 1000", 3, 1000)).sum(axis=1).digest()
    d["sum (64, 4097) axis 1"] = t(_host("sum 4097", 64, 4097)).sum(axis=1).digest()
    d["sum 100003 (two passes)"] = t(_host("sum 100003", 100_003)).sum().digest()
    x = t(_host("max", 50, 700))
    d["max/argmax (50, 700) axis 1"] = hv.concat([x.amax(axis=1), x.argmax(axis=1).to(hv.float32)]).digest()
    x = t(_host("mean var", 6, 7, 5))
    d["mean, var over (0, 2)"] = hv.concat([x.mean(axis=(0, 2)), x.var(axis=(0, 2))]).digest()
    d["sum bfloat16 (3, 5000) over (0, 1)"] = t(_host("bf16", 3, 5000)).to(hv.bfloat16).sum(axis=(0, 1)).digest()

    x = t(_host("math", 9, 33, scale=3.0))
    d["exp, tanh, sigmoid, gelu, log (9, 33)"] = hv.concat(
        [hv.exp(x), hv.tanh(x), hv.sigmoid(x), hv.gelu(x), hv.gelu(x, approximate="tanh"), hv.log(hv.abs(x) + 0.1),
         x.sin(), x.cos(), hv.rsqrt(hv.abs(x) + 0.1), x / 3.0, x ** 1.7]).digest()
    d["softmax (9, 33) axis -1"] = F.softmax(x, axis=-1).digest()
    d["log_softmax (9, 33) axis 0"] = F.log_softmax(x, axis=0).digest()
    d["layer_norm (9, 33)"] = F.layer_norm(x, 33, t(_host("ln w", 33)), t(_host("ln b", 33))).digest()
    d["cross_entropy (9, 33)"] = F.cross_entropy(x, [k % 33 for k in range(0, 90, 10)]).digest()

    d["matmul 64x96x33"] = hv.matmul(t(_host("mm a", 64, 96)), t(_host("mm b", 96, 33))).digest()
    d["matmul batched (3, 17, 40) @ (40, 9)"] = hv.matmul(t(_host("bmm a", 3, 17, 40)),
                                                          t(_host("bmm b", 40, 9))).digest()
    previous = mm.FORCE_TILE
    try:
        for tile in ("small", "large"):
            mm.FORCE_TILE = tile
            d[f"matmul tiled {tile} 70x130x45"] = hv.matmul(t(_host("tiled a", 70, 130)),
                                                            t(_host("tiled b", 130, 45))).digest()
    finally:
        mm.FORCE_TILE = previous

    # A few training steps: forward, backward, gradient accumulation and the optimizer kernels.
    hv.manual_seed(7)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    sched = optim.CosineAnnealingLR(opt, T_max=5)
    for step in range(3):
        xb = t(_host(f"mlp x {step}", 8, 12))
        yb = t(np.random.default_rng(step).integers(0, 4, 8).astype(np.int32))
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        if step == 0:
            d["MLP gradients, first step"] = state_digest({n: p.grad.digest() for n, p in model.named_parameters()})
        opt.step()
        sched.step()
    d["MLP after 3 AdamW steps"] = state_digest({k: v.digest() for k, v in model.state_dict().items()})
    params = [nn.Parameter(t(_host("sgd w", 5, 3)))]
    sgd = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for step in range(3):
        params[0].grad = t(_host(f"sgd g {step}", 5, 3))
        sgd.step()
    d["SGD nesterov after 3 steps"] = params[0].digest()
    return d


def load() -> dict:
    return json.loads(FILE.read_text()) if FILE.exists() else {}


def reference(recorded: dict, key: str) -> tuple[dict, set | None]:
    """(digests to compare with, names to compare or None for all) on the device ``key``."""
    if key in recorded:
        return recorded[key]["digests"], None
    if key == LAVAPIPE:
        raise KeyError(f"{FILE.name} has no '{LAVAPIPE}' entry: run python -m tests.known_answers --update")
    return recorded.get(LAVAPIPE, {}).get("digests", {}), PORTABLE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Compare (or --update) the known-answer digests of this device.")
    parser.add_argument("--update", action="store_true", help=f"record this device's digests in {FILE.name}")
    args = parser.parse_args(argv)
    import hlx_vulkan as hv
    info = hv.default_runtime().ctx.info
    key = device_key(info)
    here = compute()
    recorded = load()
    if args.update:
        old = recorded.get(key, {}).get("digests", {})
        recorded[key] = {"device": info["device_name"], "driver": info["driver"], "digests": here}
        FILE.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
        changed = sorted(n for n in here if n in old and old[n] != here[n])
        added, dropped = sorted(set(here) - set(old)), sorted(set(old) - set(here))
        print(f"wrote {len(here)} digests for '{key}' to {FILE}")
        for what, names in (("changed", changed), ("added", added), ("dropped", dropped)):
            print(f"  {what}: {', '.join(names) or 'none'}")
        return 0
    digests, names = reference(recorded, key)
    bad = 0
    for name, digest in here.items():
        if names is not None and name not in names:
            status = "not compared (bits may differ across devices)"
        else:
            status = "same" if digests.get(name) == digest else "DIFFERENT" if name in digests else "NOT RECORDED"
            bad += status != "same"
        print(f"  {name:42} {status}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-device reproducibility: digests of seeded random tensors and of ops on them.

Run on one device with --write, on another with --check: each row says whether
the bits are the same. rand/randn are meant to match on every device; ops whose
kernels use division, exp, log or sqrt may differ in the last bits between
devices (never between runs).

Run: python benchmarks/reproducibility.py --write benchmarks/reproducibility_lavapipe.json
     python benchmarks/reproducibility.py --check benchmarks/reproducibility_lavapipe.json

With --strict, the rows run in strict mode (hlx_vulkan/strict_mode.py), where every op is meant to
give the same bits on every device, and a short strict training run's weights digest is added;
--check then exits 1 on any mismatch. The expected digests live in tests/strict_digests.json
(tests/strict/test_strict_digests.py reproduces them on every CI run):

     python benchmarks/reproducibility.py --strict --check tests/strict_digests.json
"""

from __future__ import annotations

import argparse
import json
import sys

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F


def digests() -> dict:
    hv.manual_seed(1234)
    u = hv.rand(100_003)
    z = hv.randn(100_003)
    z16 = hv.randn(4096, dtype=hv.bfloat16)
    a, b = hv.randn(64, 96), hv.randn(96, 33)
    rows = {
        "rand float32": u.digest(),
        "randn float32": z.digest(),
        "randn bfloat16": z16.digest(),
        "add/mul (correctly rounded)": (u * z + u).digest(),
        "sum over 100003 (fixed order)": z.sum().digest(),
        "max/argmax": hv.concat([z.max().reshape(1).to(hv.float32), z.argmax().reshape(1).to(hv.float32)]).digest(),
        "softmax (uses exp, division)": F.softmax(a, -1).digest(),
    }
    try:
        from hlx_vulkan.ops.matmul import matmul
        rows["matmul 64x96x33 (fixed order)"] = matmul(a, b).digest()
    except ImportError:
        pass
    return rows


# The short strict training run whose weights digest is recorded (tests/strict_digests.json).
STRICT_TRAIN = {"seed": 0, "epochs": 1, "batch_size": 64, "hidden": 64, "lr": 2e-3}


def strict_digests(train: bool = True) -> dict:
    """The rows of :func:`digests` and more ops, all in strict mode, plus (``train``) the weights
    digest of a short ``hlx train digits --strict`` run."""
    with hv.strict():
        rows = digests()
        hv.manual_seed(99)
        x = hv.randn(37, 129) * 3.0
        w = hv.randn(129, 61) * 0.1
        y = hv.randint(0, 61, (37,))
        rows.update({
            "strict exp": hv.exp(x).digest(), "strict log": hv.log(x.abs() + 1e-3).digest(),
            "strict sqrt": hv.sqrt(x.abs()).digest(), "strict rsqrt": hv.rsqrt(x.abs() + 1e-3).digest(),
            "strict div": (x / (x.abs() + 0.5)).digest(), "strict tanh": hv.tanh(x).digest(),
            "strict sigmoid": hv.sigmoid(x).digest(), "strict sin/cos": (hv.sin(x) + hv.cos(x)).digest(),
            "strict pow": (x.abs() ** 1.37).digest(), "strict gelu (erf)": F.gelu(x).digest(),
            "strict gelu (tanh)": F.gelu(x, approximate="tanh").digest(),
            "strict log_softmax": F.log_softmax(x, -1).digest(), "strict mean/var": hv.var(x, 1).digest(),
            "strict matmul 37x129x61": (x @ w).digest(),
            "strict sum over 1000003": hv.randn(1_000_003).sum().digest(),
        })
        xg = x.detach().requires_grad_()
        wg = w.detach().requires_grad_()
        loss = F.cross_entropy(F.relu(xg @ wg), y)
        loss.backward()
        rows["strict cross-entropy loss"] = loss.digest()
        rows["strict cross-entropy grad x"] = xg.grad.digest()
        rows["strict cross-entropy grad w"] = wg.grad.digest()
    if train:
        from hlx_vulkan.training.digits import train_digits
        result = train_digits(**STRICT_TRAIN, strict=True, progress=False)
        rows["strict train digits weights"] = result.weights_digest
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write")
    group.add_argument("--check")
    parser.add_argument("--strict", action="store_true", help="strict mode's rows, and a short strict training run")
    parser.add_argument("--no-train", action="store_true", help="with --strict: leave out the training run")
    args = parser.parse_args(argv)
    info = hv.default_runtime().ctx.info
    here = strict_digests(train=not args.no_train) if args.strict else digests()
    if args.write:
        with open(args.write, "w") as f:
            json.dump({"device": info["device_name"], "driver": info["driver"], "digests": here}, f, indent=2)
        print(f"wrote {len(here)} digests from {info['device_name']} to {args.write}")
        return 0
    with open(args.check) as f:
        ref = json.load(f)
    print(f"{info['device_name']} vs {ref['device']}:")
    bad = 0
    for name, d in here.items():
        other = ref["digests"].get(name)
        status = "same bits" if d == other else ("not recorded" if other is None else "DIFFERENT")
        bad += status != "same bits"
        print(f"  {name:34} {status}")
    for name in sorted(set(ref["digests"]) - set(here)):
        bad += 1
        print(f"  {name:34} recorded, not computed here")
    if args.strict:
        print("strict mode: " + ("every digest matches" if not bad else
                                 f"{bad} of {len(set(here) | set(ref['digests']))} digests differ or are missing"))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cross-device reproducibility: digests of seeded random tensors and of ops on them.

Run on one device with --write, on another with --check: each row says whether
the bits are the same. rand/randn are meant to match on every device; ops whose
kernels use division, exp, log or sqrt may differ in the last bits between
devices (never between runs).

Run: python benchmarks/reproducibility.py --write benchmarks/reproducibility_lavapipe.json
     python benchmarks/reproducibility.py --check benchmarks/reproducibility_lavapipe.json
"""

from __future__ import annotations

import argparse
import json

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write")
    group.add_argument("--check")
    args = parser.parse_args(argv)
    info = hv.default_runtime().ctx.info
    here = digests()
    if args.write:
        with open(args.write, "w") as f:
            json.dump({"device": info["device_name"], "driver": info["driver"], "digests": here}, f, indent=2)
        print(f"wrote {len(here)} digests from {info['device_name']} to {args.write}")
        return 0
    with open(args.check) as f:
        ref = json.load(f)
    print(f"{info['device_name']} vs {ref['device']}:")
    for name, d in here.items():
        other = ref["digests"].get(name)
        status = "same bits" if d == other else ("not recorded" if other is None else "DIFFERENT")
        print(f"  {name:34} {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

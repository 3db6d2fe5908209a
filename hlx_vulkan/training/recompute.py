"""``hlx verify DIR --recompute``: re-run a recorded strict training run and confirm its digests.

A strict run's manifest (``hlx train digits --strict --out DIR``) holds what the run depends
on: the task, seed and configuration, the SHA-256 of its data, the library version, and the
digest of every tensor after every epoch, under the recorded ``digest_version`` (a run recorded
before there was one holds ``hlx-flat-sha256-v1`` digests, and is recomputed under that). Strict mode makes those bits the same on every
device, so the run can be re-made anywhere: :func:`recompute_run` trains again and checks
each recorded digest in order, naming the first data set, epoch and tensor that differs.

Example::

    n = recompute_run("run/")   # raises CheckpointError at the first difference
"""

from __future__ import annotations

import os

from ..checkpoint import read_manifest, state_digest
from ..errors import CheckpointError
from ..memory.tree_digest import FLAT, VERSIONS
from ..version import __version__
from .digits import data_digest, load_digits_split, train_digits

_CONFIG = ("seed", "epochs", "batch_size", "lr", "hidden", "capture", "jit")


def recompute_run(directory, progress: bool = False) -> int:
    """Re-run the strict run recorded in ``directory``; returns how many digests it confirmed."""
    path = os.path.join(directory, "manifest.json")
    m = read_manifest(path)
    if m.get("task") != "digits":
        raise CheckpointError(f"{path}: task {m.get('task')!r}; --recompute re-runs 'digits' runs")
    if not m.get("strict"):
        raise CheckpointError(f"{path}: the run was not trained in strict mode, so its digests hold only on the "
                              f"device that made them ({m.get('device', {}).get('name', '?')}); train it with "
                              "--strict to make it re-verifiable")
    if m.get("hlx_version") != __version__:
        raise CheckpointError(f"{path}: recorded with hlx {m.get('hlx_version')}, this is {__version__}; strict "
                              "results are promised for the same library version")
    missing = [k for k in (*_CONFIG, "data_sha256", "epoch_digests", "tensors", "weights_digest") if k not in m]
    if missing:
        raise CheckpointError(f"{path}: the manifest lacks {missing}, which a recomputation needs")
    data = load_digits_split(m["seed"])
    if data_digest(data[0], data[1], data[2], data[3]) != m["data_sha256"]:
        raise CheckpointError(f"{path}: the data differs: this machine's digits split for seed {m['seed']} does not "
                              "have the recorded SHA-256 (another scikit-learn data set?)")
    version = m.get("digest_version", FLAT)  # runs recorded before digests had versions hold flat digests
    if version not in VERSIONS:
        raise CheckpointError(f"{path}: digest version {version!r}; this library knows {', '.join(VERSIONS)}")
    micro_batches = m.get("micro_batches", 1)
    if m.get("data_parallel"):
        if micro_batches != 1:
            raise CheckpointError(f"{path}: a data-parallel run with {micro_batches} micro-batches per rank has no "
                                  "one-process equivalent to re-run")
        micro_batches = m.get("world_size", 1)  # N ranks give the bits of N micro-batches in one process
    result = train_digits(**{k: m[k] for k in _CONFIG}, model=m.get("model", "mlp"), micro_batches=micro_batches,
                          progress=progress, strict=True, digest_version=version)
    confirmed = 1
    recomputed = result.manifest["epoch_digests"]
    for rec, mine in zip(m["epoch_digests"], recomputed):
        for name, digest in rec["tensors"].items():
            got = mine["tensors"].get(name)
            if got != digest:
                raise CheckpointError(f"{path}: epoch {rec['epoch']}: tensor {name!r} differs: recorded "
                                      f"{str(digest)[:16]}..., recomputed {str(got)[:16]}...")
            confirmed += 1
    if len(m["epoch_digests"]) != len(recomputed):
        raise CheckpointError(f"{path}: {len(m['epoch_digests'])} epochs recorded, {len(recomputed)} recomputed")
    for name, entry in m["tensors"].items():
        got = result.manifest["tensors"].get(name, {}).get("digest")
        if got != entry.get("digest"):
            raise CheckpointError(f"{path}: final tensor {name!r} differs: recorded {str(entry.get('digest'))[:16]}..., "
                                  f"recomputed {str(got)[:16]}...")
        confirmed += 1
    if state_digest(result.manifest["tensors"]) != m["weights_digest"]:
        raise CheckpointError(f"{path}: the weights digest differs from the recorded {m['weights_digest'][:16]}...")
    return confirmed + 1


__all__ = ["recompute_run"]

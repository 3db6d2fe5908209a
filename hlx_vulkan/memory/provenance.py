"""Provenance: which kernel, parameters and inputs made a tensor, in an append-only ledger.

Each record is one JSON line holding the kernel's SPIR-V digest, the
parameters, the input and output tensor digests by name, the previous record's
hash, and its own hash over all of that, so an edited or removed line breaks
the chain. :meth:`Ledger.verify` re-checks the chain, the tensors' current
digests, and, given a function per operation, recomputes each output.

Example::

    ledger = Ledger("run/provenance.jsonl")
    ledger.append("vector_add", shader.digest, {"n": 1024}, {"a": x, "b": ("y", y)}, {"c": ("z", z)})
    report = ledger.verify(tensors={"x": x, "y": y, "z": z}, recompute={"vector_add": run_add})
    assert report.ok, report.problems
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping


def _digest_of(value) -> str:
    return value if isinstance(value, str) else value.digest()


def _entries(items: Mapping) -> dict:
    """{arg: tensor} or {arg: (tensor name, tensor or digest)} -> {arg: {"tensor": name, "digest": d}}."""
    out = {}
    for arg, value in items.items():
        name, value = value if isinstance(value, tuple) else (arg, value)
        out[arg] = {"tensor": name, "digest": _digest_of(value)}
    return out


@dataclass(frozen=True)
class ProvenanceRecord:
    op: str
    kernel: str                       # SHA-256 of the kernel's SPIR-V
    params: dict
    inputs: dict                      # argument -> {"tensor": name, "digest": SHA-256}
    outputs: dict                     # result -> {"tensor": name, "digest": SHA-256}
    prev: str                         # hash of the record before ("" for the first)
    hash: str = field(default="")

    def body(self) -> dict:
        d = asdict(self)
        d.pop("hash")
        return d

    def compute_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class VerificationReport:
    records: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class Ledger:
    """An append-only JSON-lines file of :class:`ProvenanceRecord`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _last_hash(self) -> str:
        records, _ = self._read()
        return records[-1].hash if records else ""

    def append(self, op: str, kernel: str, params: Mapping, inputs: Mapping, outputs: Mapping) -> ProvenanceRecord:
        """Record that ``op`` (kernel digest, params) made ``outputs`` from ``inputs``.

        Each maps the op's argument or result name to a tensor (named like the
        argument) or to ``(tensor name, tensor or digest)``.
        """
        rec = ProvenanceRecord(op=op, kernel=kernel, params=json.loads(json.dumps(dict(params))),
                               inputs=_entries(inputs), outputs=_entries(outputs), prev=self._last_hash())
        rec = ProvenanceRecord(**{**rec.body(), "hash": rec.compute_hash()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(rec), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return rec

    def _read(self) -> tuple[list[ProvenanceRecord], list[str]]:
        records, problems = [], []
        if not self.path.exists():
            return records, problems
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                records.append(ProvenanceRecord(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                problems.append(f"line {n}: not a provenance record ({exc})")
        return records, problems

    def records(self) -> list[ProvenanceRecord]:
        return self._read()[0]

    def verify(self, tensors: Mapping | None = None,
               recompute: Mapping[str, Callable[[dict, dict], Mapping]] | None = None) -> VerificationReport:
        """Check the chain, each named tensor's digest against its latest record, and recomputations.

        ``tensors`` maps tensor names to tensors. ``recompute[op](params, inputs)``
        gets the record's params and its input tensors by argument name and
        returns the results (tensors or digests) by result name.
        """
        tensors, recompute = dict(tensors or {}), dict(recompute or {})
        records, problems = self._read()
        prev = ""
        latest: dict[str, tuple[int, str]] = {}
        for i, rec in enumerate(records, 1):
            if rec.compute_hash() != rec.hash:
                problems.append(f"record {i} ({rec.op}) was altered: its hash does not match its contents")
            if rec.prev != prev:
                problems.append(f"record {i} ({rec.op}) does not follow record {i - 1}: a record was removed or reordered")
            prev = rec.hash
            for e in rec.outputs.values():
                latest[e["tensor"]] = (i, e["digest"])
            fn = recompute.get(rec.op)
            if fn is not None and all(e["tensor"] in tensors for e in rec.inputs.values()):
                # Recompute from the inputs as recorded: a later change to a tensor is reported below, by name.
                stale = [e["tensor"] for e in rec.inputs.values() if _digest_of(tensors[e["tensor"]]) != e["digest"]]
                if stale:
                    problems.append(f"record {i} ({rec.op}) cannot be recomputed: input tensor(s) "
                                    f"{', '.join(repr(n) for n in stale)} changed since")
                    continue
                result = fn(rec.params, {arg: tensors[e["tensor"]] for arg, e in rec.inputs.items()})
                got = {k: _digest_of(v) for k, v in result.items()}
                for arg, e in rec.outputs.items():
                    if got.get(arg) != e["digest"]:
                        problems.append(f"recomputing record {i} ({rec.op}) gives '{e['tensor']}' digest "
                                        f"{str(got.get(arg))[:16]}..., the record says {e['digest'][:16]}...")
        for name, t in tensors.items():
            if name in latest and _digest_of(t) != latest[name][1]:
                problems.append(f"tensor '{name}' does not match record {latest[name][0]}: its contents changed")
        return VerificationReport(len(records), problems)

"""Checkpoints: round trips of every dtype, and every kind of damage named before anything is trusted."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from hlx_vulkan import errors
from hlx_vulkan.checkpoint import MAX_HEADER_BYTES, load_checkpoint, save_checkpoint, state_digest
from hlx_vulkan.memory import dtype_of

DTYPES = ["float32", "float16", "bfloat16", "int32", "uint32", "int8", "uint8"]


def _arrays(rng):
    out = {}
    for i, name in enumerate(DTYPES):
        a = (rng.standard_normal((3, i + 1)) * 50).astype(dtype_of(name).numpy)
        out[f"t.{name}"] = a
    return out


def _rewrite_header(path, edit):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_round_trip_of_every_dtype_is_bit_exact_and_verified(tmp_path, rng):
    arrays = _arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, {"note": "x"})
    back = load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})
    assert list(back) == list(arrays)
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].tobytes() == a.tobytes()
    assert state_digest(entries) == state_digest({k: e["digest"] for k, e in entries.items()})


def test_a_manifest_file_path_works_too(tmp_path, rng):
    entries = save_checkpoint(tmp_path / "c.safetensors", _arrays(rng))
    (tmp_path / "m.json").write_text(json.dumps({"tensors": entries}))
    load_checkpoint(tmp_path / "c.safetensors", tmp_path / "m.json")


@pytest.fixture
def saved(tmp_path, rng):
    path = tmp_path / "c.safetensors"
    return path, save_checkpoint(path, _arrays(rng))


def test_truncated_file(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(errors.CheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(data[:5])
    with pytest.raises(errors.CheckpointError, match="too short"):
        load_checkpoint(path)


def test_trailing_bytes_after_the_last_tensor(saved):
    path, entries = saved
    data = path.read_bytes()
    for extra in (b"\0", b"x" * 9):
        path.write_bytes(data + extra)
        with pytest.raises(errors.CheckpointError, match=f"cover {len(data) - 8 - _header_len(data)} of"):
            load_checkpoint(path)
        with pytest.raises(errors.CheckpointError):
            load_checkpoint(path, {"tensors": entries})  # the manifest's digests alone would not see them


def _header_len(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def test_header_over_the_cap(saved):
    path, _ = saved
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}")
    with pytest.raises(errors.CheckpointError, match="cap"):
        load_checkpoint(path)


def test_header_that_is_not_json(saved):
    path, _ = saved
    path.write_bytes(struct.pack("<Q", 4) + b"{x:1")
    with pytest.raises(errors.CheckpointError, match="JSON"):
        load_checkpoint(path)


def test_offsets_with_a_gap_or_overlap(saved):
    path, _ = saved

    def shift(h):
        entry = h["t.int8"]
        entry["data_offsets"] = [entry["data_offsets"][0] + 1, entry["data_offsets"][1] + 1]
    _rewrite_header(path, shift)
    with pytest.raises(errors.CheckpointError, match="t.int8|contiguous"):
        load_checkpoint(path)


def test_offsets_past_the_end(saved):
    path, _ = saved
    _rewrite_header(path, lambda h: h["t.uint8"].update(data_offsets=[0, 10**9]))
    with pytest.raises(errors.CheckpointError, match="t.uint8"):
        load_checkpoint(path)


def test_shape_that_disagrees_with_the_span(saved):
    path, _ = saved
    _rewrite_header(path, lambda h: h["t.float32"].update(shape=[3, 2]))
    with pytest.raises(errors.CheckpointError, match="t.float32.*needs"):
        load_checkpoint(path)


def test_unknown_dtype_and_bad_entries(saved):
    path, _ = saved
    _rewrite_header(path, lambda h: h["t.int32"].update(dtype="Q99"))
    with pytest.raises(errors.CheckpointError, match="unsupported dtype"):
        load_checkpoint(path)
    _rewrite_header(path, lambda h: h["t.int32"].update(dtype="I32", shape="3"))
    with pytest.raises(errors.CheckpointError, match="invalid shape"):
        load_checkpoint(path)


def test_one_flipped_bit_is_caught_by_the_manifest_and_named(saved):
    path, entries = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte belongs to the last tensor
    path.write_bytes(bytes(data))
    load_checkpoint(path)  # structurally fine ...
    with pytest.raises(errors.CheckpointError, match="tampered"):
        load_checkpoint(path, {"tensors": entries})  # ... but not the bytes the manifest vouches for


def test_manifest_and_file_with_different_tensors(saved):
    path, entries = saved
    fewer = {k: v for k, v in entries.items() if k != "t.int8"}
    with pytest.raises(errors.CheckpointError, match="t.int8"):
        load_checkpoint(path, {"tensors": fewer})
    with pytest.raises(errors.CheckpointError, match="tensors"):
        load_checkpoint(path, {"nothing": 1})


def test_missing_file(tmp_path):
    with pytest.raises(errors.CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "absent.safetensors")

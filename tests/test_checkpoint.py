"""Checkpoints: round trips of every dtype, and every kind of damage named before anything is trusted."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_trailing_bytes_after_the_last_tensor(saved):
    path, entries = saved
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(errors.CheckpointError, match="cover .* of .* data bytes"):
        load_checkpoint(path, {"tensors": entries})


def _rewrite_metadata(path, key, value):
    def edit(h):
        h["__metadata__"][key] = value
    _rewrite_header(path, edit)


@pytest.mark.parametrize("key,value,match", [
    ("hlx.dtypes", "[1, 2]", "must map tensor names to dtype names"),  # was an AttributeError
    ("hlx.dtypes", '{"t.int8": 5}', "must map tensor names to dtype names"),
    ("hlx.dtypes", '{"t.float32": "bfloat16"}', "bfloat16 in the metadata but stored as F32"),  # was a ValueError
    ("hlx.order", "7", "must be a list of tensor names"),  # was a TypeError
    ("hlx.order", '[["t.int8"]]', "must be a list of tensor names"),
    ("hlx.order", "{", "hlx.order is not valid JSON"),
    ("hlx.order", "[" * 100000 + "]" * 100000, "hlx.order nests too deeply"),
])
def test_metadata_of_the_wrong_json_type(saved, key, value, match):
    path, _ = saved
    _rewrite_metadata(path, key, value)
    with pytest.raises(errors.CheckpointError, match=match):
        load_checkpoint(path)


def _write_header(path, raw: bytes):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_a_deeply_nested_header(saved):
    """Was a RecursionError from the JSON parser."""
    path, _ = saved
    _write_header(path, b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}")
    with pytest.raises(errors.CheckpointError, match="header nests too deeply"):
        load_checkpoint(path)


def test_header_values_of_the_wrong_json_type(saved):
    path, _ = saved
    _rewrite_header(path, lambda h: h["t.int32"].update(dtype=["I32"]))  # was a TypeError (unhashable)
    with pytest.raises(errors.CheckpointError, match="unsupported dtype"):
        load_checkpoint(path)
    _rewrite_header(path, lambda h: h["t.int32"].update(dtype="I32", shape=[True, 3]))
    with pytest.raises(errors.CheckpointError, match="invalid shape"):
        load_checkpoint(path)


def test_a_duplicate_key_is_refused(saved):
    """safetensors might read the other of two entries than the one checked."""
    path, _ = saved
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n].rstrip()
    first = header.index(b'"t.float32"')
    end = header.index(b"}", first) + 1
    _write_header(path, header[:-1] + b"," + header[first:end] + b"}")
    with pytest.raises(errors.CheckpointError, match="duplicate key 't.float32'"):
        load_checkpoint(path)


@pytest.mark.parametrize("manifest,match", [
    ([1, 2], "a list, not a dict"),
    ({"tensors": {"t.int8": "abc"}}, "entry for tensor .* is not an object with a digest"),  # was an AttributeError
    ({"tensors": {"t.int8": {"digest": 5}}}, "entry for tensor .* is not an object with a digest"),
])
def test_manifests_of_the_wrong_json_type(saved, manifest, match):
    path, entries = saved
    if isinstance(manifest, dict):
        manifest = {"tensors": {**entries, **manifest["tensors"]}}
    with pytest.raises(errors.CheckpointError, match=match):
        load_checkpoint(path, manifest)


@pytest.mark.parametrize("text,match", [
    (b"\xff\xfe{}", "not valid JSON"),  # was a UnicodeDecodeError
    (b"[" * 100000 + b"]" * 100000, "nests too deeply"),  # was a RecursionError
    (b"[1, 2]", "a JSON list, not an object"),
    (b'{"tensors": 1' + b"0" * 5000 + b"}", "not valid JSON"),  # past Python's 4300-digit int limit
])
def test_manifest_files_that_are_not_a_json_object(saved, tmp_path, text, match):
    path, _ = saved
    (tmp_path / "m.json").write_bytes(text)
    with pytest.raises(errors.CheckpointError, match=match):
        load_checkpoint(path, tmp_path / "m.json")


def test_a_tensor_of_a_dtype_hlx_does_not_digest(tmp_path):
    import safetensors.numpy
    safetensors.numpy.save_file({"x": np.arange(3, dtype=np.float64)}, tmp_path / "f64.safetensors")
    assert load_checkpoint(tmp_path / "f64.safetensors")["x"].dtype == np.float64
    with pytest.raises(errors.CheckpointError, match="float64, a dtype hlx digests do not cover"):
        load_checkpoint(tmp_path / "f64.safetensors", {"tensors": {"x": {"digest": "0" * 64}}})


# Properties: whatever the file and the manifest, the only error is CheckpointError.

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["dtype", "shape", "data_offsets", "digest", "tensors", "__metadata__", "t.int8", "x"]),
        inner, max_size=3),
    max_leaves=12)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp("original") / "c.safetensors"
    entries = save_checkpoint(path, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.int8(3).reshape(())})
    return path, path.read_bytes(), entries


def _damaged(data: bytearray, kind: str, at: int, value) -> None:
    (n,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (0,)
    if kind in ("header", "tensor", "metadata"):
        try:
            header = json.loads(data[8:8 + n])
        except (ValueError, RecursionError):
            return
        if kind == "header":
            header = value
        elif not isinstance(header, dict) or not header:
            return
        elif kind == "tensor":
            header[sorted(header)[at % len(header)]] = value
        else:
            header["__metadata__"] = {"hlx.dtypes" if at % 2 else "hlx.order": json.dumps(value)}
        raw = json.dumps(header).encode()
        data[:8 + n] = struct.pack("<Q", len(raw)) + raw
    elif kind == "bytes" and data:
        data[at % len(data)] ^= 1 + at % 255
    elif kind == "cut":
        del data[at % (len(data) + 1):]
    else:
        data += json.dumps(value).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(["header", "tensor", "metadata", "bytes", "cut", "append"]),
                                st.integers(0, 2 ** 16), _JSON), min_size=1, max_size=3),
       manifest=_JSON)
def test_any_damage_raises_only_checkpoint_error(original, edits, manifest):
    path, data, entries = original
    data = bytearray(data)
    for kind, at, value in edits:
        _damaged(data, kind, at, value)
    damaged = path.with_name("damaged.safetensors")
    damaged.write_bytes(bytes(data))
    for m in (None, manifest, {"tensors": manifest}, {"tensors": {**entries, "a": manifest}}):
        try:
            load_checkpoint(damaged, m)
        except errors.CheckpointError:
            pass

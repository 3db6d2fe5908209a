"""hlx-tree-sha256-v1: the device's digest against the host implementation and against the
specification re-implemented here from its text; SHA-256 test vectors through the kernel;
versions in checkpoint manifests and `hlx verify`."""

import hashlib
import json

import ml_dtypes
import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import cli, errors
from hlx_vulkan.checkpoint import file_digest, load_checkpoint, save_checkpoint, state_digest
from hlx_vulkan.memory import tensor_digest, uint32
from hlx_vulkan.memory.tree_digest import CHUNK, FLAT, TREE, digest_array, hash_chunks, tree_digest
from hlx_vulkan.ops.digest import CHUNKS, WORKGROUP

POISON = 0xDEADBEEF


def spec_digest(dtype_name, shape, data: bytes) -> str:
    """The module docstring's definition, written out plainly: 4096-byte leaves, 16-way nodes."""
    level = [hashlib.sha256(data[i:i + 4096]).digest() for i in range(0, len(data), 4096)] or [hashlib.sha256().digest()]
    while len(level) > 1:
        level = [hashlib.sha256(b"".join(level[i:i + 16])).digest() for i in range(0, len(level), 16)]
    header = b"hlx-tree-sha256-v1\0" + dtype_name.encode() + b"\0" + ",".join(map(str, shape)).encode() + b"\0"
    return hashlib.sha256(header + level[0]).hexdigest()


def le_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()  # every test machine here is little-endian


def random_array(rng, shape, dtype):
    dt = hv.memory.dtype_of(dtype)
    if dt.name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dt.is_float:
        return rng.standard_normal(shape).astype(dt.numpy)
    info = np.iinfo(dt.numpy)
    return rng.integers(info.min, info.max, shape, dtype=dt.numpy, endpoint=True)


def check_all_agree(t: hv.Tensor, host: np.ndarray) -> str:
    """The device's digest of ``t`` equals the host implementation's and the specification's of ``host``."""
    device = t.digest(TREE)
    assert device == tree_digest(t.dtype.name, t.shape, host) == spec_digest(t.dtype.name, t.shape, le_bytes(host))
    return device


def leaf_words(x: hv.Tensor, nbytes: int, chunk: int, spare: int = 8) -> np.ndarray:
    """The kernel's raw output over ``x``, into a poisoned tensor with ``spare`` extra words that must stay poisoned."""
    rt = x.runtime
    chunks = -(-nbytes // chunk)
    out = hv.full((chunks * 8 + spare,), POISON, dtype=uint32)
    kernel = rt.kernels.get(CHUNKS, workgroup=(WORKGROUP,))
    rt.run(kernel, {"O": out.buf, "A": x.buf}, {"chunks": chunks, "chunk": chunk, "nbytes": nbytes,
                                                 "q0": x.buf.byte_offset // 16}, chunks)
    words = out.numpy()
    assert (words[chunks * 8:] == POISON).all(), "the kernel wrote past its digests"
    return words[:chunks * 8]


# FIPS 180-4 / NIST CSVS examples: "", "abc", the 448-bit and the 896-bit messages.
VECTORS = [
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
     b"nopqrstu", "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
]


@pytest.mark.parametrize("message,expected", VECTORS, ids=["abc", "448-bit", "896-bit"])
def test_leaf_hash_gives_the_nist_vectors(message, expected):
    assert hashlib.sha256(message).hexdigest() == expected
    words = leaf_words(hv.tensor(np.frombuffer(message, np.uint8)), len(message), CHUNK)
    assert words.astype("<u4").tobytes().hex() == expected


def test_leaf_hash_of_every_tail_length_in_one_chunk(rng):
    """Each of 64 chunks of 128 bytes holds a message of another length (0..63 bytes past a full
    block, so the padding takes one block or two): compared with hashlib one by one."""
    data = rng.integers(0, 256, 64 * 128 - 1, dtype=np.uint8)  # the last chunk is one byte short
    words = leaf_words(hv.tensor(data), data.size, 128)
    raw = words.astype("<u4").tobytes()
    for c in range(64):
        assert raw[32 * c:32 * c + 32] == hashlib.sha256(data[128 * c:128 * (c + 1)].tobytes()).digest(), c


# 0, 1, around a SHA block, around a chunk, exactly 16 leaves (one node), 17 (two levels),
# 257 leaves + 5 bytes (three levels).
SIZES = [0, 1, 3, 55, 56, 63, 64, 65, 4095, 4096, 4097, 3 * 4096 + 777, 16 * 4096, 16 * 4096 + 1, 257 * 4096 + 5]


@pytest.mark.parametrize("nbytes", SIZES)
def test_device_equals_host_and_specification_by_size(rng, nbytes):
    x = rng.integers(0, 256, nbytes, dtype=np.uint8)
    check_all_agree(hv.tensor(x), x)


def test_large_tensor_of_9_mib(rng):
    x = rng.standard_normal(9 * (1 << 20) // 4 + 3).astype(np.float32)  # 2304 leaves, the last 12 bytes long
    check_all_agree(hv.tensor(x), x)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int64", "int32", "uint32", "int8", "uint8",
                                   "bool"])
def test_every_dtype(rng, dtype):
    for shape in [(), (7,), (37, 113), (3, 5, 1, 1031)]:
        x = random_array(rng, shape, dtype)
        check_all_agree(hv.tensor(x, dtype=dtype), x)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "bool", "int64"])
def test_non_contiguous_and_offset_views_digest_their_canonical_bytes(rng, dtype):
    x = random_array(rng, (67, 131), dtype)
    t = hv.tensor(x, dtype=dtype)
    views = {"transpose": (t.T, x.T), "step": (t[::3, 1::2], x[::3, 1::2]), "row offset": (t[1:], x[1:]),
             "element offset": (t.reshape(-1)[5:], x.reshape(-1)[5:]), "16-byte offset": (t[16:], x[16:])}
    for name, (view, host) in views.items():
        assert check_all_agree(view, host) == tree_digest(dtype, host.shape, np.ascontiguousarray(host)), name
    assert t[1:].digest(TREE) != t.digest(TREE)


def test_one_changed_byte_changes_the_digest(rng):
    x = rng.integers(0, 256, 20 * 4096 + 9, dtype=np.uint8)  # two levels on the device
    base = check_all_agree(hv.tensor(x), x)
    seen = {base}
    for pos in (0, 1, 63, 64, 4095, 4096, 11 * 4096 + 100, x.size - 1):
        y = x.copy()
        y[pos] ^= 1 << int(rng.integers(0, 8))
        seen.add(check_all_agree(hv.tensor(y), y))
    assert len(seen) == 9


def test_dtype_and_shape_are_in_the_header(rng):
    raw = rng.integers(-2**31, 2**31, 24, dtype=np.int32)
    digests = {hv.tensor(raw).digest(TREE), hv.tensor(raw.view(np.uint32)).digest(TREE),
               hv.tensor(raw.view(np.float32)).digest(TREE), hv.tensor(raw.reshape(4, 6)).digest(TREE),
               hv.tensor(raw.reshape(6, 4)).digest(TREE)}
    assert len(digests) == 5


def test_versions_are_distinct(rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    t = hv.tensor(x)
    assert t.digest(FLAT) == tensor_digest("float32", (5, 9), x)
    assert t.digest(TREE) != t.digest(FLAT)
    assert digest_array(FLAT, "float32", (5, 9), x) == t.digest(FLAT)
    assert digest_array(TREE, "float32", (5, 9), x) == t.digest(TREE)
    for bad in ("tree", "hlx-tree-sha256-v2", None):
        with pytest.raises(errors.DigestVersionError, match="unknown digest version"):
            t.digest(bad)
        with pytest.raises(ValueError):
            digest_array(bad, "float32", (5, 9), x)


def test_digest_inside_a_capture_is_refused():
    t = hv.ones(100)
    with pytest.raises(errors.CaptureError, match="digest"):
        with hv.capture():
            t.digest(TREE)


def test_host_leaves_are_each_chunks_sha256(rng):
    data = rng.integers(0, 256, 100 * 4096 + 3, dtype=np.uint8).tobytes()
    leaves = hash_chunks(data, CHUNK)
    assert len(leaves) == 101 * 32
    for i in (0, 57, 100):
        assert leaves[32 * i:32 * i + 32] == hashlib.sha256(data[4096 * i:4096 * (i + 1)]).digest()


def _arrays(rng):
    return {"w": random_array(rng, (33, 17), "float32"), "h": random_array(rng, (129,), "float16"),
            "b": random_array(rng, (5, 3), "bfloat16").astype(ml_dtypes.bfloat16), "i": random_array(rng, (9,), "int64"),
            "m": random_array(rng, (11,), "bool")}


def _run_dir(path, arrays, version):
    entries = save_checkpoint(path / "model.safetensors", arrays, digest_version=version)
    if version == FLAT:  # as manifests written before digests had versions
        for e in entries.values():
            del e["digest_version"]
    manifest = {"tensors": entries, "weights_digest": state_digest(entries),
                "checkpoint": {"file": "model.safetensors", "sha256": file_digest(path / "model.safetensors")}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_checkpoint_manifest_records_the_tree_digest_and_its_version(tmp_path, rng):
    arrays = _arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=TREE)
    for name, a in arrays.items():
        e = entries[name]
        assert e["digest_version"] == TREE == "hlx-tree-sha256-v1"
        assert e["digest"] == tree_digest(e["dtype"], a.shape, a) == hv.tensor(a).digest(TREE)
    back = load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})
    assert all(back[k].tobytes() == a.tobytes() for k, a in arrays.items())


@pytest.mark.parametrize("version", [FLAT, TREE])
def test_hlx_verify_accepts_both_versions_and_names_a_tampered_tensor(tmp_path, rng, capsys, version):
    manifest = _run_dir(tmp_path, _arrays(rng), version)
    assert cli.main(["verify", str(tmp_path)]) == 0
    assert manifest["weights_digest"] in capsys.readouterr().out
    entry = manifest["tensors"]["h"]
    entry["digest"] = entry["digest"][:-1] + ("0" if entry["digest"][-1] != "0" else "1")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["verify", str(tmp_path)]) == 2
    assert "'h' does not match" in capsys.readouterr().err


def test_a_flat_digest_under_the_tree_version_is_refused(tmp_path, rng):
    arrays = _arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=FLAT)
    entries["w"]["digest_version"] = TREE  # relabelled, not recomputed
    with pytest.raises(errors.CheckpointError, match="'w' does not match"):
        load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})


@pytest.mark.parametrize("bad", ["hlx-tree-sha256-v9", 3, None])
def test_an_unknown_version_in_a_manifest_is_a_checkpoint_error(tmp_path, rng, bad):
    entries = save_checkpoint(tmp_path / "c.safetensors", _arrays(rng), digest_version=TREE)
    entries["m"]["digest_version"] = bad
    with pytest.raises(errors.CheckpointError, match="'m' has digest version"):
        load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})

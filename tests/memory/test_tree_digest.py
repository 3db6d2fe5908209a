"""hlx-tree-sha256-v1: the device's digest against the host implementation and against the
specification re-implemented here from its text; SHA-256 test vectors through the kernel;
versions in checkpoint manifests and `hlx verify`."""

import hashlib

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from hlx_vulkan.checkpoint import load_checkpoint, save_checkpoint
from hlx_vulkan.memory import tensor_digest, uint32
from hlx_vulkan.memory.tree_digest import CHUNK, FLAT, TREE, digest_array, hash_chunks, tree_digest
from hlx_vulkan.ops.digest import CHUNKS, WORKGROUP
from digest_cases import (DTYPES, VIEW_DTYPES, check_every_shape, check_verify_names_a_tampered_tensor, check_views,
                          checkpoint_arrays, le_bytes)

POISON = 0xDEADBEEF


def spec_digest(dtype_name, shape, data: bytes) -> str:
    """The module docstring's definition, written out plainly: 4096-byte leaves, 16-way nodes."""
    level = [hashlib.sha256(data[i:i + 4096]).digest() for i in range(0, len(data), 4096)] or [hashlib.sha256().digest()]
    while len(level) > 1:
        level = [hashlib.sha256(b"".join(level[i:i + 16])).digest() for i in range(0, len(level), 16)]
    header = b"hlx-tree-sha256-v1\0" + dtype_name.encode() + b"\0" + ",".join(map(str, shape)).encode() + b"\0"
    return hashlib.sha256(header + level[0]).hexdigest()


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


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(rng, dtype):
    check_every_shape(rng, dtype, check_all_agree)


@pytest.mark.parametrize("dtype", VIEW_DTYPES)
def test_non_contiguous_and_offset_views_digest_their_canonical_bytes(rng, dtype):
    check_views(rng, dtype, TREE, check_all_agree)


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


def test_checkpoint_manifest_records_the_tree_digest_and_its_version(tmp_path, rng):
    arrays = checkpoint_arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=TREE)
    for name, a in arrays.items():
        e = entries[name]
        assert e["digest_version"] == TREE == "hlx-tree-sha256-v1"
        assert e["digest"] == tree_digest(e["dtype"], a.shape, a) == hv.tensor(a).digest(TREE)
    back = load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})
    assert all(back[k].tobytes() == a.tobytes() for k, a in arrays.items())


@pytest.mark.parametrize("version", [FLAT, TREE])
def test_hlx_verify_accepts_both_versions_and_names_a_tampered_tensor(tmp_path, rng, capsys, version):
    check_verify_names_a_tampered_tensor(tmp_path, rng, capsys, version, "h")


def test_a_flat_digest_under_the_tree_version_is_refused(tmp_path, rng):
    arrays = checkpoint_arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=FLAT)
    entries["w"]["digest_version"] = TREE  # relabelled, not recomputed
    with pytest.raises(errors.CheckpointError, match="'w' does not match"):
        load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})


@pytest.mark.parametrize("bad", ["hlx-tree-sha256-v9", 3, None])
def test_an_unknown_version_in_a_manifest_is_a_checkpoint_error(tmp_path, rng, bad):
    entries = save_checkpoint(tmp_path / "c.safetensors", checkpoint_arrays(rng), digest_version=TREE)
    entries["m"]["digest_version"] = bad
    with pytest.raises(errors.CheckpointError, match="'m' has digest version"):
        load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})

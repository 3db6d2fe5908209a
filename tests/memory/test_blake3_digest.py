"""hlx-blake3-v1: the device's BLAKE3 against the ``blake3`` package (the reference
implementation) and against BLAKE3 re-implemented here from its specification (which also
checks the kernels' intermediate chaining values); both kernel variants; checkpoints, manifests
and `hlx verify` with this version beside the older ones."""

import json
import struct

import blake3
import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import cli, errors
from hlx_vulkan.checkpoint import load_checkpoint, save_checkpoint
from hlx_vulkan.memory import uint32
from hlx_vulkan.memory.blake3_digest import BLAKE3, blake3_digest, blake3_root
from hlx_vulkan.memory.tree_digest import DEFAULT, FLAT, TREE, VERSIONS, digest_array
from hlx_vulkan.ops.digest_blake3 import (CHUNK_WG, CHUNKS, PARENT_WG, PARENTS, VARIANTS, device_blake3_digest,
                                          record_root)
from hlx_vulkan.training.digits import train_digits
from hlx_vulkan.training.recompute import recompute_run
from digest_cases import (DTYPES, VIEW_DTYPES, check_every_shape, check_verify_names_a_tampered_tensor, check_views,
                          checkpoint_arrays, le_bytes)

POISON = 0xDEADBEEF

# --- BLAKE3 from its specification (https://github.com/BLAKE3-team/BLAKE3-specs), written plainly.
IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
START, END, PARENT, ROOT = 1, 2, 4, 8
MASK = 0xFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & MASK


def compress(cv, block: bytes, counter: int, block_len: int, flags: int) -> list:
    m = list(struct.unpack("<16I", block.ljust(64, b"\0")))
    v = list(cv) + IV[:4] + [counter & MASK, counter >> 32, block_len, flags]
    for _ in range(7):
        for i, (a, b, c, d) in enumerate([(0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                                          (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)]):
            x, y = m[2 * i], m[2 * i + 1]
            v[a] = (v[a] + v[b] + x) & MASK
            v[d] = _rotr(v[d] ^ v[a], 16)
            v[c] = (v[c] + v[d]) & MASK
            v[b] = _rotr(v[b] ^ v[c], 12)
            v[a] = (v[a] + v[b] + y) & MASK
            v[d] = _rotr(v[d] ^ v[a], 8)
            v[c] = (v[c] + v[d]) & MASK
            v[b] = _rotr(v[b] ^ v[c], 7)
        m = [m[p] for p in PERMUTATION]
    return [v[i] ^ v[i + 8] for i in range(8)]


def chunk_cv(chunk: bytes, index: int, extra: int = 0) -> list:
    blocks = [chunk[i:i + 64] for i in range(0, len(chunk), 64)] or [b""]
    cv = IV
    for i, block in enumerate(blocks):
        flags = (START if i == 0 else 0) | (END | extra if i == len(blocks) - 1 else 0)
        cv = compress(cv, block, index, len(block), flags)
    return cv


def parent_cv(left, right, extra: int = 0) -> list:
    return compress(IV, struct.pack("<16I", *left, *right), 0, 64, PARENT | extra)


def up_levels(level: list, levels: int) -> list:
    """``levels`` levels of pairing in order (an odd last node goes up unchanged; ROOT on the one
    parent of a level of two)."""
    for _ in range(levels):
        level = [parent_cv(level[i], level[i + 1], ROOT if len(level) == 2 else 0) if i + 1 < len(level)
                 else level[i] for i in range(0, len(level), 2)]
    return level


def spec_blake3(data: bytes) -> str:
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    if len(chunks) == 1:
        return struct.pack("<8I", *chunk_cv(chunks[0], 0, ROOT)).hex()
    level = [chunk_cv(c, i) for i, c in enumerate(chunks)]
    return struct.pack("<8I", *up_levels(level, len(level).bit_length())[0]).hex()


def framed(dtype_name, shape, data: bytes) -> str:
    """The module docstring's definition of hlx-blake3-v1, written out with the package."""
    header = b"hlx-blake3-v1\0" + dtype_name.encode() + b"\0" + ",".join(map(str, shape)).encode() + b"\0"
    return blake3.blake3(header + blake3.blake3(data).digest()).hexdigest()


def check_all_agree(t: hv.Tensor, host: np.ndarray) -> str:
    device = t.digest(BLAKE3)
    assert device == blake3_digest(t.dtype.name, t.shape, host) == framed(t.dtype.name, t.shape, le_bytes(host))
    return device


# --- the specification written here against the package, so it can judge the kernels' insides


@pytest.mark.parametrize("nbytes", [0, 1, 64, 65, 1024, 1025, 3 * 1024, 5 * 1024 + 1])
def test_the_written_out_specification_is_blake3(rng, nbytes):
    data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    assert spec_blake3(data) == blake3.blake3(data).hexdigest()


def test_blake3_of_the_empty_input_is_the_published_one():
    assert blake3.blake3(b"").hexdigest() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert blake3_root(b"").hex() == spec_blake3(b"")


def chunk_words(x: hv.Tensor, nbytes: int, variant: str, root: int = 0, spare: int = 8) -> list:
    """The chunk kernel's chaining values over ``x``, written into a poisoned tensor whose ``spare``
    extra words must stay poisoned."""
    rt = x.runtime
    chunks = -(-nbytes // 1024)
    out = hv.full((chunks * 8 + spare,), POISON, dtype=uint32)
    kernel = rt.kernels.get(CHUNKS, {"VARIANT": VARIANTS[variant]}, workgroup=(CHUNK_WG,))
    rt.run(kernel, {"O": out.buf, "A": x.buf}, {"chunks": chunks, "nbytes": nbytes, "q0": x.buf.byte_offset // 16,
                                                 "root": root}, chunks)
    words = out.numpy()
    assert (words[chunks * 8:] == POISON).all(), "the kernel wrote past its chaining values"
    return [list(map(int, words[8 * c:8 * c + 8])) for c in range(chunks)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("nbytes", [1, 63, 64, 1023, 1024, 70 * 1024 + 333, 64 * 1024])
def test_chunk_kernel_gives_every_chunks_chaining_value(rng, variant, nbytes):
    """Every chunk's CV (no ROOT), including a last chunk with a partial block and a last
    workgroup of 64 that is not full (70 chunks + 333 bytes)."""
    data = rng.integers(0, 256, nbytes, dtype=np.uint8)
    got = chunk_words(hv.tensor(data), nbytes, variant)
    raw = data.tobytes()
    assert got == [chunk_cv(raw[i:i + 1024], i // 1024) for i in range(0, nbytes, 1024)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chunk_kernel_reads_from_a_16_byte_offset_and_sets_root_on_a_lone_chunk(rng, variant):
    data = rng.integers(0, 256, 48 + 777, dtype=np.uint8)
    view = hv.tensor(data)[48:]
    assert view.buf.byte_offset == 48
    assert chunk_words(view, 777, variant, root=ROOT) == [chunk_cv(data[48:].tobytes(), 0, ROOT)]


@pytest.mark.parametrize("n", [2, 3, 5, 512, 513, 1000, 1537])
def test_parent_kernel_reduces_each_512_chaining_values_to_one(rng, n):
    cvs = rng.integers(0, 2**32, (n, 8), dtype=np.uint32)
    groups = -(-n // (2 * PARENT_WG))
    out = hv.full((groups * 8 + 8,), POISON, dtype=uint32)
    rt = out.runtime
    rt.run(rt.kernels.get(PARENTS, workgroup=(PARENT_WG,)), {"O": out.buf, "I": hv.tensor(cvs.reshape(-1)).buf},
           {"n": n}, groups * PARENT_WG)
    words = out.numpy()
    assert (words[groups * 8:] == POISON).all(), "the kernel wrote past its outputs"
    expected = up_levels([list(map(int, c)) for c in cvs], 9)
    assert [list(map(int, words[8 * g:8 * g + 8])) for g in range(groups)] == expected


# --- the whole digest against the package


SIZES = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 3073, 64 * 1024, 512 * 1024 + 1, (1 << 20) + 13]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("nbytes", SIZES)
def test_device_blake3_equals_the_package_by_size(rng, variant, nbytes):
    data = rng.integers(0, 256, nbytes, dtype=np.uint8)
    t = hv.tensor(data)
    if nbytes:
        assert record_root(t, variant).numpy().astype("<u4").tobytes().hex() == blake3.blake3(data).hexdigest()
    assert device_blake3_digest(t, variant) == framed("uint8", (nbytes,), data.tobytes())


def test_large_tensor_of_9_mib(rng):
    x = rng.standard_normal(9 * (1 << 20) // 4 + 3).astype(np.float32)  # 9217 chunks, three parent dispatches
    check_all_agree(hv.tensor(x), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(rng, dtype):
    check_every_shape(rng, dtype, check_all_agree)


@pytest.mark.parametrize("dtype", VIEW_DTYPES)
def test_non_contiguous_and_offset_views_digest_their_canonical_bytes(rng, dtype):
    check_views(rng, dtype, BLAKE3, check_all_agree)


def test_one_changed_byte_changes_the_digest(rng):
    x = rng.integers(0, 256, 600 * 1024 + 9, dtype=np.uint8)  # two parent dispatches
    seen = {check_all_agree(hv.tensor(x), x)}
    for pos in (0, 1, 63, 64, 1023, 1024, 511 * 1024 + 100, 512 * 1024, x.size - 1):
        y = x.copy()
        y[pos] ^= 1 << int(rng.integers(0, 8))
        seen.add(check_all_agree(hv.tensor(y), y))
    assert len(seen) == 10


def test_dtype_and_shape_are_in_the_header_and_versions_differ(rng):
    raw = rng.integers(-2**31, 2**31, 24, dtype=np.int32)
    digests = {hv.tensor(raw).digest(BLAKE3), hv.tensor(raw.view(np.uint32)).digest(BLAKE3),
               hv.tensor(raw.view(np.float32)).digest(BLAKE3), hv.tensor(raw.reshape(4, 6)).digest(BLAKE3),
               hv.tensor(raw.reshape(6, 4)).digest(BLAKE3)}
    assert len(digests) == 5
    t = hv.tensor(raw)
    assert len({t.digest(v) for v in VERSIONS}) == len(VERSIONS) == 3
    assert digest_array(BLAKE3, "int32", (24,), raw) == t.digest(BLAKE3)


def test_strict_mode_gives_the_same_digest(rng):
    x = rng.standard_normal(3000).astype(np.float32)
    with hv.strict():
        assert hv.tensor(x).digest(BLAKE3) == blake3_digest("float32", (3000,), x)


def test_digest_inside_a_capture_and_an_unknown_variant_are_refused():
    t = hv.ones(100)
    with pytest.raises(errors.CaptureError, match="digest"):
        with hv.capture():
            t.digest(BLAKE3)
    with pytest.raises(errors.DigestVersionError, match="unknown BLAKE3 kernel variant 'warp'"):
        device_blake3_digest(t, "warp")


# --- checkpoints, manifests and `hlx verify`


def test_checkpoint_manifest_records_blake3_and_round_trips(tmp_path, rng):
    arrays = checkpoint_arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=BLAKE3)
    for name, a in arrays.items():
        e = entries[name]
        assert e["digest_version"] == BLAKE3 == "hlx-blake3-v1"
        assert e["digest"] == framed(e["dtype"], a.shape, le_bytes(a)) == hv.tensor(a).digest(BLAKE3)
    back = load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})
    assert all(back[k].tobytes() == a.tobytes() for k, a in arrays.items())


@pytest.mark.parametrize("version", [FLAT, TREE, BLAKE3])
def test_hlx_verify_accepts_every_version_and_names_a_tampered_tensor(tmp_path, rng, capsys, version):
    check_verify_names_a_tampered_tensor(tmp_path, rng, capsys, version, "big")


def test_a_tree_digest_relabelled_as_blake3_is_refused(tmp_path, rng):
    arrays = checkpoint_arrays(rng)
    entries = save_checkpoint(tmp_path / "c.safetensors", arrays, digest_version=TREE)
    entries["w"]["digest_version"] = BLAKE3  # relabelled, not recomputed
    with pytest.raises(errors.CheckpointError, match="'w' does not match"):
        load_checkpoint(tmp_path / "c.safetensors", {"tensors": entries})


# --- the default, and runs recorded before it


def test_blake3_is_the_default_of_digest_and_checkpoints(tmp_path, rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    t = hv.tensor(x)
    assert DEFAULT == BLAKE3
    assert t.digest() == t.digest(BLAKE3) == framed("float32", (5, 9), le_bytes(x))
    assert t.digest() != t.digest(FLAT) == t.buf.digest()  # the memory layer's digest stays the flat one
    entries = save_checkpoint(tmp_path / "c.safetensors", {"x": x})
    assert entries["x"]["digest_version"] == BLAKE3 and entries["x"]["digest"] == t.digest()


def test_a_strict_run_records_its_digest_version_and_an_older_flat_run_still_recomputes(tmp_path):
    """A run's manifest records ``digest_version``; one recorded before (flat digests, no version
    anywhere) verifies and recomputes under the flat version; one whose digests were relabelled
    BLAKE3 is named at its first tensor."""
    args = ["--seed", "3", "--epochs", "1", "--hidden", "8", "--batch-size", "512", "--quiet", "--strict"]
    new, old = tmp_path / "new", tmp_path / "old"
    assert cli.main(["train", "digits", *args, "--out", str(new)]) == 0
    m = json.loads((new / "manifest.json").read_text())
    assert m["digest_version"] == BLAKE3 and all(e["digest_version"] == BLAKE3 for e in m["tensors"].values())
    result = train_digits(seed=3, epochs=1, hidden=8, batch_size=512, progress=False, strict=True,
                          out_dir=str(old), digest_version=FLAT)
    m_old = json.loads((old / "manifest.json").read_text())
    del m_old["digest_version"]
    for e in m_old["tensors"].values():
        del e["digest_version"]
    (old / "manifest.json").write_text(json.dumps(m_old))
    assert m_old["weights_digest"] == result.weights_digest != m["weights_digest"]
    assert cli.main(["verify", str(old), "--recompute"]) == 0
    m_old["digest_version"] = BLAKE3
    (old / "manifest.json").write_text(json.dumps(m_old))
    with pytest.raises(errors.CheckpointError, match="epoch 1: tensor '0.weight' differs"):
        recompute_run(old)

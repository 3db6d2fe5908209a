"""What the tests of every device digest version share: inputs of every dtype, the checks that
the digest of any view is that of its canonical bytes, and run folders for `hlx verify`. Each
test module passes its version and its ``check_all_agree(tensor, host) -> digest``."""

import json

import ml_dtypes
import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import cli
from hlx_vulkan.checkpoint import file_digest, save_checkpoint, state_digest
from hlx_vulkan.memory.tree_digest import FLAT, digest_array

DTYPES = ["float32", "float16", "bfloat16", "int64", "int32", "uint32", "int8", "uint8", "bool"]
VIEW_DTYPES = ["float32", "float16", "int8", "bool", "int64"]


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


def check_every_shape(rng, dtype, check_all_agree) -> None:
    for shape in [(), (7,), (37, 113), (3, 5, 1, 1031)]:
        x = random_array(rng, shape, dtype)
        check_all_agree(hv.tensor(x, dtype=dtype), x)


def check_views(rng, dtype, version: str, check_all_agree) -> None:
    """Transposed, strided and offset views digest as their contiguous copies do."""
    x = random_array(rng, (67, 131), dtype)
    t = hv.tensor(x, dtype=dtype)
    views = {"transpose": (t.T, x.T), "step": (t[::3, 1::2], x[::3, 1::2]), "row offset": (t[1:], x[1:]),
             "element offset": (t.reshape(-1)[5:], x.reshape(-1)[5:]), "16-byte offset": (t[16:], x[16:])}
    for name, (view, host) in views.items():
        assert check_all_agree(view, host) == digest_array(version, dtype, host.shape, np.ascontiguousarray(host)), name
    assert t[1:].digest(version) != t.digest(version)


def checkpoint_arrays(rng) -> dict:
    return {"w": random_array(rng, (33, 17), "float32"), "h": random_array(rng, (129,), "float16"),
            "b": random_array(rng, (5, 3), "bfloat16").astype(ml_dtypes.bfloat16), "i": random_array(rng, (9,), "int64"),
            "m": random_array(rng, (11,), "bool"), "big": random_array(rng, (300, 7), "int32")}


def run_dir(path, arrays, version) -> dict:
    """A run folder (checkpoint and manifest) with digests of ``version``; FLAT as written before
    manifests recorded versions."""
    entries = save_checkpoint(path / "model.safetensors", arrays, digest_version=version)
    if version == FLAT:
        for e in entries.values():
            del e["digest_version"]
    manifest = {"tensors": entries, "weights_digest": state_digest(entries),
                "checkpoint": {"file": "model.safetensors", "sha256": file_digest(path / "model.safetensors")}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def check_verify_names_a_tampered_tensor(path, rng, capsys, version: str, tampered: str) -> None:
    """`hlx verify` accepts a run of ``version`` and names the tensor whose recorded digest changed."""
    manifest = run_dir(path, checkpoint_arrays(rng), version)
    assert cli.main(["verify", str(path)]) == 0
    assert manifest["weights_digest"] in capsys.readouterr().out
    entry = manifest["tensors"][tampered]
    entry["digest"] = entry["digest"][:-1] + ("0" if entry["digest"][-1] != "0" else "1")
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["verify", str(path)]) == 2
    assert f"'{tampered}' does not match" in capsys.readouterr().err

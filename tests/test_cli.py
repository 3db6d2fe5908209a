import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlx_vulkan import cli
from hlx_vulkan.checkpoint import file_digest, save_checkpoint, state_digest


def test_info_lists_devices_and_choice(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "chosen: [" in out and "features:" in out and "float controls:" in out


def test_info_json(capsys, monkeypatch):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["devices"] and data["chosen"] is not None
    assert "max_compute_workgroup_invocations" in data["devices"][0]["limits"]


def test_info_reports_failed_selection(capsys, monkeypatch):
    monkeypatch.setenv("HLX_DEVICE", "no-such-gpu-anywhere")
    assert cli.main(["info"]) == 1
    out = capsys.readouterr().out
    assert "no device chosen" in out and "name does not contain" in out


@pytest.fixture
def run_dir(tmp_path):
    """What `hlx train --out` leaves for `hlx verify`: a checkpoint and its manifest."""
    entries = save_checkpoint(tmp_path / "model.safetensors", {"w": np.arange(4, dtype=np.float32)})
    manifest = {"tensors": entries, "weights_digest": state_digest(entries),
                "checkpoint": {"file": "model.safetensors", "sha256": file_digest(tmp_path / "model.safetensors")}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path, manifest


def _verify(capsys, folder) -> tuple[int, list[str]]:
    code = cli.main(["verify", str(folder)])
    return code, capsys.readouterr().err.splitlines()


def test_verify_accepts_a_good_run(capsys, run_dir):
    assert _verify(capsys, run_dir[0]) == (0, [])


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(checkpoint=[1]), "'checkpoint' is not an object"),  # was an AttributeError
    (lambda m: m["checkpoint"].update(file=7), "checkpoint file 7 is not a file name"),  # was a TypeError
    (lambda m: m["checkpoint"].update(file="../model.safetensors"), "is not a file name in"),
    (lambda m: m["checkpoint"].update(file="a\nb"), r"'a\\nb' is not a file name"),
    (lambda m: m["checkpoint"].update(file="absent"), "absent: cannot read"),  # was a FileNotFoundError
    (lambda m: m["checkpoint"].update(sha256=["x"]), "sha256 \\['x'\\] is not a string"),
    (lambda m: m.update(tensors={"w": None}), "entry for tensor 'w' is not an object"),
    (lambda m: m.update(weights_digest=None), "do not give the recorded weights digest"),
])
def test_verify_names_a_malformed_manifest_in_one_line(capsys, run_dir, edit, match):
    folder, manifest = run_dir
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, err = _verify(capsys, folder)
    assert code == 2 and len(err) == 1 and err[0].startswith("hlx: "), err
    assert re.search(match, err[0]), err[0]


@pytest.mark.parametrize("text", [b"", b"[]", b"\xff", b"[" * 100000 + b"]" * 100000])
def test_verify_of_a_manifest_that_is_not_a_json_object(capsys, run_dir, text):
    folder, _ = run_dir
    (folder / "manifest.json").write_bytes(text)
    code, err = _verify(capsys, folder)
    assert code == 2 and len(err) == 1 and err[0].startswith("hlx: manifest "), err


def test_verify_without_a_run(capsys, tmp_path):
    code, err = _verify(capsys, tmp_path / "nowhere")
    assert code == 2 and len(err) == 1 and "cannot read" in err[0]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["checkpoint", "tensors", "weights_digest", "file", "sha256", "w", "whole"]), value=_JSON)
def test_verify_answers_any_manifest_with_ok_or_one_line(capsys, run_dir, key, value):
    folder, manifest = run_dir
    manifest = json.loads(json.dumps(manifest))
    if key == "whole":
        manifest = value
    elif key in ("file", "sha256"):
        manifest["checkpoint"][key] = value
    elif key == "w":
        manifest["tensors"]["w"] = value
    else:
        manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, err = _verify(capsys, folder)
    assert (code, err) == (0, []) or (code == 2 and len(err) == 1 and err[0].startswith("hlx: ")), (code, err)

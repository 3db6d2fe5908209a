"""`hlx train digits --strict --out DIR` records a run that `hlx verify DIR --recompute` re-makes
on this device, confirming every digest, or naming the first tensor (and epoch) that differs."""

from __future__ import annotations

import json

import pytest

from hlx_vulkan import cli
from hlx_vulkan.errors import CheckpointError
from hlx_vulkan.training.recompute import recompute_run

ARGS = ["--seed", "2", "--epochs", "2", "--hidden", "16", "--batch-size", "256", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("strict_run")
    assert cli.main(["train", "digits", *ARGS, "--strict", "--out", str(out)]) == 0
    return out


def test_manifest_records_what_a_recomputation_needs(run_dir):
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["strict"] is True and len(m["data_sha256"]) == 64 and m["hlx_version"]
    assert [e["epoch"] for e in m["epoch_digests"]] == [1, 2]
    assert set(m["epoch_digests"][-1]["tensors"]) == set(m["tensors"])
    assert all(m["epoch_digests"][-1]["tensors"][k] == v["digest"] for k, v in m["tensors"].items())


def test_verify_recompute_confirms_every_recorded_digest(run_dir, capsys):
    assert cli.main(["verify", str(run_dir), "--recompute"]) == 0
    out = capsys.readouterr().out
    m = json.loads((run_dir / "manifest.json").read_text())
    n = 1 + sum(len(e["tensors"]) for e in m["epoch_digests"]) + len(m["tensors"]) + 1
    assert f"{n} recorded digests match" in out


def test_a_tampered_digest_is_named_with_its_epoch_and_tensor(run_dir, tmp_path, capsys):
    m = json.loads((run_dir / "manifest.json").read_text())
    name = sorted(m["epoch_digests"][0]["tensors"])[1]
    m["epoch_digests"][0]["tensors"][name] = "ab" * 32
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=rf"epoch 1: tensor '{name}' differs: recorded abababab"):
        recompute_run(tmp_path)
    m["epoch_digests"][0]["tensors"][name] = json.loads((run_dir / "manifest.json").read_text())[
        "epoch_digests"][0]["tensors"][name]
    m["data_sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="the data differs"):
        recompute_run(tmp_path)


def test_a_run_not_trained_strictly_is_refused(tmp_path, capsys):
    assert cli.main(["train", "digits", *ARGS[:-1], "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["strict"] is False
    assert cli.main(["verify", str(tmp_path), "--recompute"]) == 2
    assert "not trained in strict mode" in capsys.readouterr().err

"""`hlx train digits`: accuracy, bit-identical weights for a seed (in-process, across processes,
eager, captured and jitted), and the files it writes."""

from __future__ import annotations

import json
import re

import pytest

import sklearn  # noqa: F401 - a dependency of `hlx train digits`: missing, this fails loudly

import hlx_vulkan as hv
from hlx_vulkan.checkpoint import load_checkpoint, state_digest
from hlx_vulkan.training.digits import build_model, evaluate, load_digits_split, train_digits
from conftest import assert_clean_exit, run_python

SHORT = dict(epochs=2, hidden=32, batch_size=128, progress=False)


def test_default_run_reaches_97_percent_on_the_held_out_split():
    result = train_digits(seed=0, progress=False)
    assert result.test_accuracy >= 0.97, result.history[-1]


def test_same_seed_same_bits_other_seed_other_bits():
    a = train_digits(seed=0, **SHORT)
    b = train_digits(seed=0, **SHORT)
    c = train_digits(seed=1, **SHORT)
    assert a.weights_digest == b.weights_digest
    assert a.history == b.history
    assert c.weights_digest != a.weights_digest


def test_capture_gives_the_same_weights_as_eager():
    eager = train_digits(seed=3, **SHORT)
    captured = train_digits(seed=3, capture=True, **SHORT)
    assert captured.weights_digest == eager.weights_digest


def test_jit_gives_the_same_weights_and_history_as_eager():
    eager = train_digits(seed=3, **SHORT)
    jitted = train_digits(seed=3, jit=True, **SHORT)
    assert jitted.weights_digest == eager.weights_digest
    assert jitted.history == eager.history
    assert jitted.manifest["jit"] and not eager.manifest["jit"]
    with pytest.raises(ValueError, match="one of capture and jit"):
        train_digits(seed=3, capture=True, jit=True, **SHORT)


def test_outputs_plot_checkpoint_and_manifest(tmp_path):
    with hv.capture() as graph:  # dispatches random/counter, a kernel the run below never uses
        hv.rand(3)
    graph.destroy()
    result = train_digits(seed=2, out_dir=str(tmp_path), **SHORT)
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["weights_digest"] == result.weights_digest
    assert manifest["device"]["name"] and manifest["device"]["driver"]
    assert manifest["kernels"] and all(len(k["spirv_sha256"]) == 64 for k in manifest["kernels"])
    names = {k["name"] for k in manifest["kernels"]}
    assert {"kernels/update", "cross_entropy/cross_entropy"} <= names and any(n.startswith("matmul/") for n in names)
    assert "random/counter" not in names  # dispatched before the run, not by it
    state = load_checkpoint(tmp_path / "model.safetensors", manifest)
    assert state_digest(manifest["tensors"]) == result.weights_digest
    model = build_model(32)
    model.load_state_dict(state)
    _, x_test, _, y_test = load_digits_split(2)
    _, acc = evaluate(model, hv.tensor(x_test), hv.tensor(y_test))
    assert acc == result.test_accuracy


def test_hlx_verify_accepts_a_run_and_names_a_tampered_tensor(tmp_path, capsys):
    from hlx_vulkan.cli import main
    result = train_digits(seed=4, out_dir=str(tmp_path), **SHORT)
    assert main(["verify", str(tmp_path)]) == 0
    assert result.weights_digest in capsys.readouterr().out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["tensors"]["0.bias"]["digest"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(tmp_path)]) == 2
    assert "0.bias" in capsys.readouterr().err


def test_bad_settings_are_refused_before_training(capsys):
    from hlx_vulkan.cli import main
    assert main(["train", "digits", "--quiet", "--batch-size", "5000"]) == 2
    assert "batch size" in capsys.readouterr().err
    assert main(["train", "digits", "--quiet", "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err


def _cli_digest(*args):
    out = run_python(["-m", "hlx_vulkan.cli", "train", "digits", "--quiet", "--epochs", "1", "--hidden", "32", *args])
    assert_clean_exit(out)
    m = re.search(r"weights digest: ([0-9a-f]{64})", out.stdout)
    assert m, out.stdout
    return m.group(1)


def test_the_command_prints_the_same_digest_in_two_processes():
    first = _cli_digest("--seed", "0")
    assert _cli_digest("--seed", "0") == first
    assert _cli_digest("--seed", "0", "--capture") == first
    assert _cli_digest("--seed", "0", "--jit") == first

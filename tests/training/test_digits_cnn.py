"""`hlx train digits --model cnn`, reduced: a few steps of the convolutional net give the same
weights twice, the same weights captured and replayed (and jitted) as eager, other bits for another seed,
and the files and manifest of the MLP's run. (The full run, >= 98.5% test accuracy with the
default seed, takes about two minutes here: `hlx train digits --model cnn`.)"""

from __future__ import annotations

import json

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan.training.digits import MODEL_DEFAULTS, build_model, train_digits
from conftest import assert_clean_exit, run_python

# One epoch of 11 batches of 128, a net 4 channels wide.
SHORT = dict(epochs=1, hidden=4, batch_size=128, progress=False, model="cnn")


def test_same_seed_same_bits_and_capture_and_jit_equal_eager():
    a = train_digits(seed=0, **SHORT)
    b = train_digits(seed=0, **SHORT)
    captured = train_digits(seed=0, capture=True, **SHORT)
    jitted = train_digits(seed=0, jit=True, **SHORT)
    other = train_digits(seed=1, **SHORT)
    assert a.weights_digest == b.weights_digest == captured.weights_digest == jitted.weights_digest
    assert a.history == b.history == jitted.history
    assert other.weights_digest != a.weights_digest
    assert a.manifest["model"] == "cnn" and "1.running_mean" not in a.manifest["tensors"]
    assert "features.1.running_mean" in a.manifest["tensors"]
    assert "features.1.num_batches_tracked" in a.manifest["tensors"]
    assert np.isfinite(a.history[-1]["train_loss"]) and np.isfinite(a.history[-1]["test_loss"])
    names = {k["name"] for k in a.manifest["kernels"]}
    from hlx_vulkan.ops import conv_implicit
    conv = "conv/conv_implicit" if conv_implicit.use_implicit(hv.zeros(1)) else "conv/im2col"  # GPUs: implicit
    assert {conv, "conv/maxpool"} <= names


def test_cnn_layout_and_defaults():
    hv.manual_seed(0)
    model = build_model(8, "cnn")
    keys = list(model.state_dict())
    assert keys[:6] == ["features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
                        "features.1.running_var", "features.1.num_batches_tracked"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    out = model(hv.tensor(np.random.default_rng(0).random((3, 64)).astype(np.float32)))
    assert out.shape == (3, 10)
    assert MODEL_DEFAULTS["cnn"][0] <= 10  # a few minutes at most on a 2-core lavapipe machine


def test_cli_writes_plot_checkpoint_and_manifest_that_verify(tmp_path):
    out = tmp_path / "run"
    proc = run_python(["-m", "hlx_vulkan.cli", "train", "digits", "--model", "cnn", "--epochs", "1", "--hidden", "4",
                       "--batch-size", "256", "--quiet", "--out", str(out)])
    assert_clean_exit(proc)
    assert "test accuracy" in proc.stdout and "after 1 epochs" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "cnn" and manifest["hidden"] == 4
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_python(["-m", "hlx_vulkan.cli", "verify", str(out)])
    assert_clean_exit(proc)

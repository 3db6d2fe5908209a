"""`hlx train sort` and `hlx train text`, reduced: bit-identical weights for a seed (eager twice,
captured), the held-out split, greedy decoding, the files written, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.cli import main
from hlx_vulkan.training import transformer as tr

SHORT = dict(epochs=2, steps=2, batch_size=16, d_model=16, heads=2, layers=1, ff=32, test_count=40, progress=False)
TEXT = dict(epochs=1, steps=2, batch_size=4, context=12, d_model=16, heads=2, layers=1, ff=32, sample_chars=15,
            progress=False)
POEM = "the quick brown fox jumps over the lazy dog; " * 12


def test_sort_same_seed_same_bits_eager_or_captured_other_seed_other_bits():
    a = tr.train_sort(seed=0, **SHORT)
    b = tr.train_sort(seed=0, **SHORT)
    c = tr.train_sort(seed=0, capture=True, **SHORT)
    d = tr.train_sort(seed=1, **SHORT)
    assert a.weights_digest == b.weights_digest == c.weights_digest
    assert a.history == b.history == c.history
    assert d.weights_digest != a.weights_digest
    assert len(a.history) == 2 and all(0.0 <= h["test_accuracy"] <= 1.0 for h in a.history)


def test_text_same_seed_same_bits_and_sample(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text(POEM)
    a, sa = tr.train_text(str(path), seed=4, **TEXT)
    b, sb = tr.train_text(str(path), seed=4, capture=True, **TEXT)
    assert a.weights_digest == b.weights_digest and sa == sb
    assert len(sa) == 6 + 15 and set(sa) <= set(POEM)
    with pytest.raises(ValueError, match="characters"):
        short = tmp_path / "short.txt"
        short.write_text("ab")
        tr.train_text(str(short), **TEXT)


def test_test_sequences_never_reach_training():
    test = tr.sort_test_set(5, 300)
    assert tr._is_test(test).all() and len(np.unique(test, axis=0)) > 250
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 10, (20000, 5))
    share = tr._is_test(seqs).mean()
    assert 0.09 < share < 0.16, share  # one in eight
    x, y = tr._sort_examples(seqs[:3])
    np.testing.assert_array_equal(x[:, 5], tr.SEP)
    np.testing.assert_array_equal(y[:, 5:], np.sort(seqs[:3], axis=1))
    assert (y[:, :5] == tr.IGNORE).all()


def test_greedy_decoding_feeds_back_each_answer():
    """A model that copies the previous token: greedy decoding answers the separator's predecessor
    repeated, which shows each prediction is fed back as the next input."""
    hv.manual_seed(0)
    model = tr.TinyGPT(11, 10, d_model=16, heads=2, layers=1, ff=16)
    seqs = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    out = tr.greedy_sort(model, seqs)
    assert out.shape == (2, 5) and out.dtype.kind == "i"
    # The same answer as running the model by hand, one token at a time.
    tokens = np.concatenate([seqs, np.full((2, 1), tr.SEP)], axis=1)
    with hv.no_grad():
        for _ in range(5):
            nxt = model(hv.tensor(tokens.astype(np.int32))).numpy()[:, -1].argmax(-1)
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, tokens[:, 6:])


def test_outputs_and_verify(tmp_path, capsys):
    result = tr.train_sort(seed=2, out_dir=str(tmp_path), **SHORT)
    assert (tmp_path / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["task"] == "sort" and manifest["seed"] == 2
    assert manifest["weights_digest"] == result.weights_digest
    assert any(k["name"] == "attention/attention" for k in manifest["kernels"])
    assert "blocks.0.self_attn.in_proj_weight" in manifest["tensors"]
    assert main(["verify", str(tmp_path)]) == 0
    assert result.weights_digest in capsys.readouterr().out


def test_command_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "poem.txt"
    path.write_text(POEM)
    small = {k: v for k, v in TEXT.items() if k not in ("epochs", "steps", "batch_size", "progress")}
    real = tr.train_text
    monkeypatch.setattr(tr, "train_text", lambda file, **kw: real(file, **{**kw, **small}))  # a small model
    assert main(["train", "text"]) == 2
    assert "needs a text file" in capsys.readouterr().err
    assert main(["train", "sort", "--jit"]) == 2
    assert main(["train", "sort", str(path)]) == 2
    assert main(["train", "text", str(path), "--epochs", "1", "--steps", "1", "--batch-size", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "sample:" in out and "weights digest:" in out

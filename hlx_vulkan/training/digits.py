"""``hlx train digits``: an MLP (or, with ``model="cnn"``, a small convolutional net) on scikit-learn's bundled handwritten digits (8x8 images,
1,797 of them, no download), trained on the default Vulkan device, reproducibly.

The same seed on the same device gives bit-identical weights: initialisation comes from
the seeded device generator, batches from a seeded host permutation, and every kernel in
forward, backward and the optimizer reduces in a fixed order.

Example::

    from hlx_vulkan.training.digits import train_digits
    result = train_digits(seed=0, epochs=30, out_dir="run")
    print(result.test_accuracy, result.weights_digest)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..autograd.graph import no_grad
from ..checkpoint import file_digest, save_checkpoint, state_digest
from ..jit import jit as jit_function
from ..memory.tree_digest import DEFAULT, check_version
from ..nn import CrossEntropyLoss, Linear, ReLU, Sequential
from ..ops import elementwise as ew
from ..ops import reduce as red
from ..ops.creation import zeros
from ..ops.random import manual_seed
from ..ops.tensor import from_numpy
from ..optim import AdamW, CosineAnnealingLR
from ..runtime import capture as capture_graph
from ..runtime import default_runtime
from ..strict_mode import is_strict
from ..strict_mode import strict as strict_mode
from ..version import __version__
from .parallel import ParallelStep

TEST_FRACTION = 0.2


@dataclass
class TrainResult:
    test_accuracy: float
    weights_digest: str
    history: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    seconds: float = 0.0
    rank: int = 0  # of the MPI run (data_parallel); 0 otherwise


def load_digits_split(seed: int):
    """Train and test arrays: pixels scaled to [0, 1], a stratified held-out 20%."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    return train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)


def build_model(hidden: int = 256, model: str = "mlp"):
    """``mlp``: two hidden layers of ``hidden`` units; ``cnn``: :func:`~hlx_vulkan.training.cnn.build_cnn`
    with ``hidden`` channels in its widest layer."""
    if model == "cnn":
        from .cnn import build_cnn
        return build_cnn(hidden)
    if model != "mlp":
        raise ValueError(f"model must be 'mlp' or 'cnn', not {model!r}")
    return Sequential(Linear(64, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))


# Defaults per model: (epochs, lr, hidden), each measured to reach its accuracy target quickly.
MODEL_DEFAULTS = {"mlp": (30, 2e-3, 256), "cnn": (8, 4e-3, 16)}


def train_digits(seed: int = 0, epochs: int | None = None, batch_size: int = 64, lr: float | None = None,
                 hidden: int | None = None, out_dir: str | None = None, capture: bool = False, jit: bool = False,
                 progress: bool = True, model: str = "mlp", strict: bool = False, micro_batches: int = 1,
                 data_parallel: bool = False, digest_version: str = DEFAULT) -> TrainResult:
    """Train, evaluate each epoch, and (with ``out_dir``) write the plot, checkpoint and manifest.

    ``capture``: record the step once with ``hv.capture()`` and replay it, feeding the batch by
    hand; ``jit``: wrap the step in ``hv.jit`` and pass it each batch as numpy arrays. Both give
    the eager run's weights, bit for bit. ``strict``: run in strict mode (hlx_vulkan/strict_mode.py),
    as does a run started with strict mode on: the weights are then the same bits on every
    device, and ``hlx verify DIR --recompute`` can re-run it anywhere from its manifest.
    ``micro_batches``: accumulate the gradients of that many equal pieces of each batch before
    the step; ``data_parallel``: one replica per MPI rank, each taking its piece of every batch
    (``mpirun -n N``), bit-identical to ``micro_batches=N`` in one process
    (hlx_vulkan.training.parallel). Progress, plot and checkpoint come from rank 0 only.
    ``digest_version``: the tensor digests the manifest records (hlx_vulkan.memory.tree_digest)."""
    with strict_mode(strict or is_strict()):
        return _train_digits(seed, epochs, batch_size, lr, hidden, out_dir, capture, jit, progress, model,
                             micro_batches, data_parallel, check_version(digest_version))


def data_digest(*arrays) -> str:
    """SHA-256 over each array's dtype, shape and bytes: what the manifest records of the data."""
    h = hashlib.sha256(b"hlx-data\0")
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\0".encode() + a.tobytes())
    return h.hexdigest()


def _train_digits(seed, epochs, batch_size, lr, hidden, out_dir, capture, jit, progress, model, micro_batches,
                  data_parallel, digest_version) -> TrainResult:
    started = time.perf_counter()
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"model must be one of {sorted(MODEL_DEFAULTS)}, not {model!r}")
    d_epochs, d_lr, d_hidden = MODEL_DEFAULTS[model]
    epochs, lr, hidden = (d_epochs if epochs is None else epochs, d_lr if lr is None else lr,
                          d_hidden if hidden is None else hidden)
    if epochs < 1 or hidden < 1 or lr <= 0:
        raise ValueError(f"epochs and hidden must be positive and lr above 0 (got {epochs}, {hidden}, {lr})")
    if capture and jit:
        raise ValueError("choose one of capture and jit")
    if (capture or jit) and (micro_batches != 1 or data_parallel):
        raise ValueError("capture and jit record one whole-batch step: use them without micro-batches and "
                         "data-parallel")
    rt = default_runtime()
    rt.kernels.reset_usage()  # the manifest lists the kernels this run dispatched
    x_train, x_test, y_train, y_test = load_digits_split(seed)
    if not 1 <= batch_size <= len(x_train):
        raise ValueError(f"batch size must be between 1 and the {len(x_train)} training images, got {batch_size}")
    manual_seed(seed)
    kind, model = model, build_model(hidden, model)
    par = ParallelStep(model, micro_batches=micro_batches, data_parallel=data_parallel)
    piece = batch_size // par.pieces
    par.shard(np.arange(batch_size))  # refuses a batch that the ranks and micro-batches cannot share
    steps_per_epoch = len(x_train) // batch_size  # full batches only: every step has the same shapes
    opt = AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_fn = CrossEntropyLoss()
    xb = zeros(piece, 64)
    yb = zeros(piece, dtype="int32")
    loss_sum = zeros(1)
    x_test_dev, y_test_dev = from_numpy(x_test), from_numpy(y_test)

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        with no_grad():
            ew.launch("x + y", [loss_sum, loss.reshape(1)], out=loss_sum)

    def loss_of(idx):
        with no_grad():
            xb.copy_(x_train[idx])
            yb.copy_(y_train[idx])
        return loss_fn(par.model(xb), yb)

    def split_step(batch):
        loss = par.backward(batch, loss_of)
        opt.step()
        sched.step()
        with no_grad():
            ew.launch("x + y", [loss_sum, loss], out=loss_sum)

    graph = None
    jitted = jit_function(step) if jit else None
    order = np.random.default_rng(seed)
    history = []
    epoch_digests = []  # each epoch's tensor digests, for hlx verify --recompute
    bar = _progress(epochs, progress and par.is_main, "digits" if kind == "mlp" else f"digits ({kind})")
    for epoch in range(epochs):
        model.train()
        perm = order.permutation(len(x_train))
        with no_grad():
            ew.launch("CT(0)", [loss_sum], out=loss_sum)
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            if jitted is not None:
                jitted(x_train[idx], y_train[idx])  # eager, then captured, then replayed
                continue
            if not capture:
                split_step(idx)
                continue
            with no_grad():
                xb.copy_(x_train[idx])
                yb.copy_(y_train[idx])
            if graph is not None:
                graph.replay()
            else:
                with capture_graph(rt) as graph:  # records the step and runs it once
                    step(xb, yb)
        train_loss = float(par.mean_over_ranks(loss_sum).numpy()[0]) / steps_per_epoch
        test_loss, test_acc = evaluate(model, x_test_dev, y_test_dev)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "test_loss": test_loss,
                        "test_accuracy": test_acc})
        epoch_digests.append({name: t.digest(digest_version) for name, t in model.state_dict().items()})
        if bar is not None:
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{test_acc:.4f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if graph is not None:
        graph.destroy()
    if jitted is not None:
        jitted.reset()
    rt.synchronize()
    state = model.state_dict()
    result = TrainResult(test_accuracy=history[-1]["test_accuracy"] if history else 0.0, weights_digest="",
                         history=history)
    entries = {name: {"dtype": t.dtype.name, "shape": list(t.shape), "digest": t.digest(digest_version),
                      "digest_version": digest_version} for name, t in state.items()}
    result.weights_digest = state_digest(entries)
    result.seconds = time.perf_counter() - started
    result.rank = par.rank
    result.manifest = _manifest(rt, seed, epochs, batch_size, lr, hidden, capture, jit, entries, result)
    result.manifest["model"] = kind
    result.manifest.update(digest_version=digest_version, strict=is_strict(), data_sha256=data_digest(x_train, x_test, y_train, y_test),
                           epoch_digests=[{"epoch": i + 1, "tensors": d} for i, d in enumerate(epoch_digests)],
                           world_size=par.world_size, micro_batches=micro_batches, data_parallel=data_parallel)
    if out_dir is not None and par.is_main:
        _write_outputs(out_dir, state, result)
    return result


def evaluate(model, x, y) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y), in eval mode, without a graph."""
    model.eval()
    with no_grad():
        logits = model(x)
        loss = CrossEntropyLoss()(logits, y)
        correct = red.sum(ew.eq(red.argmax(logits, axis=1), y).to("int32"))
        loss_v, correct_v = float(loss.item()), int(correct.item())
    model.train()
    return loss_v, correct_v / x.shape[0]


def _progress(total: int, enabled: bool, desc: str = "digits", unit: str = "epoch"):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit)


def _manifest(rt, seed, epochs, batch_size, lr, hidden, capture, jit, entries, result) -> dict:
    info = rt.ctx.info
    kernels = sorted({(k.name, k.digest) for k in rt.kernels.used()})
    return {
        "hlx_version": __version__, "task": "digits", "seed": seed, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "hidden": hidden, "capture": capture, "jit": jit,
        "device": {"name": info["device_name"], "type": info["device_type"], "driver": info["driver"],
                   "api_version": info["api_version"]},
        "test_accuracy": result.test_accuracy, "weights_digest": result.weights_digest,
        "tensors": entries, "kernels": [{"name": n, "spirv_sha256": d} for n, d in kernels],
        "history": result.history,
    }


def _write_outputs(out_dir: str, state, result: TrainResult, title: str = "hlx train digits") -> None:
    os.makedirs(out_dir, exist_ok=True)
    ckpt = os.path.join(out_dir, "model.safetensors")
    save_checkpoint(ckpt, state, {"weights_digest": result.weights_digest})
    result.manifest["checkpoint"] = {"file": "model.safetensors", "sha256": file_digest(ckpt)}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(result.manifest, f, indent=2)
    plot_history(result.history, os.path.join(out_dir, "training.png"), title)


def plot_history(history: list, path: str, title: str = "hlx train digits") -> None:
    """Loss (train and test) and test accuracy per epoch, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["test_loss"] for h in history], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(epochs, [100 * h["test_accuracy"] for h in history], color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["TrainResult", "build_model", "data_digest", "evaluate", "load_digits_split", "plot_history", "train_digits"]

"""``hlx train sort`` and ``hlx train text FILE``: a small decoder-only transformer (token and
position embeddings, causal self-attention on the fused kernel, MLP blocks, layer norm: the
library's ``TransformerEncoderLayer`` with ``norm_first`` and a causal mask), trained on the
default Vulkan device, reproducibly (same seed and device: the same weights, bit for bit, eager
or captured).

- ``sort``: sequences of ``length`` digits, then a separator, then the same digits sorted; the
  loss is on the sorted half. Tested by greedy decoding on held-out sequences (a fixed hash
  of a sequence decides whether it is a test sequence, so training never sees one).
- ``text``: a character-level model on any UTF-8 text file (the last 10% held out), then a
  sample drawn from it with a seeded host generator.

Example::

    from hlx_vulkan.training.transformer import train_sort
    result = train_sort(seed=0)
    print(result.test_accuracy, result.weights_digest)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..autograd.graph import no_grad
from ..checkpoint import state_digest
from ..memory.tree_digest import DEFAULT
from ..nn import Embedding, LayerNorm, Linear, Module, ModuleList, TransformerEncoderLayer
from ..nn import functional as F
from ..nn.transformer import generate_square_subsequent_mask
from ..ops import elementwise as ew
from ..ops import reduce as red
from ..ops.creation import arange, zeros
from ..ops.random import manual_seed
from ..ops.tensor import from_numpy
from ..optim import AdamW, CosineAnnealingLR
from ..runtime import capture as capture_graph
from ..runtime import default_runtime
from ..version import __version__
from .digits import TrainResult, _progress, _write_outputs
from .parallel import ParallelStep

IGNORE = -100


class TinyGPT(Module):
    """Token and position embeddings, ``layers`` pre-norm blocks with causal self-attention, a
    final LayerNorm and a linear head over the vocabulary."""

    def __init__(self, vocab: int, context: int, d_model: int = 64, heads: int = 4, layers: int = 2,
                 ff: int | None = None):
        super().__init__()
        self.context = context
        self.tok_emb = Embedding(vocab, d_model)
        self.pos_emb = Embedding(context, d_model)
        self.blocks = ModuleList([TransformerEncoderLayer(d_model, heads, dim_feedforward=ff or 4 * d_model,
                                                          dropout=0.0, activation="gelu", batch_first=True,
                                                          norm_first=True) for _ in range(layers)])
        self.ln_f = LayerNorm(d_model)
        self.head = Linear(d_model, vocab)
        self._consts: dict = {}

    def _positions(self, T: int, rt):
        if T not in self._consts:
            self._consts[T] = (arange(T, dtype="int32", runtime=rt), generate_square_subsequent_mask(T, runtime=rt))
        return self._consts[T]

    def forward(self, idx):
        """Logits (B, T, vocab) for token ids ``idx`` (B, T), each position seeing itself and before."""
        B, T = idx.shape
        if T > self.context:
            raise ValueError(f"{T} tokens is more than the model's context of {self.context}")
        pos, mask = self._positions(T, self.tok_emb.weight.runtime)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.head(self.ln_f(x))


@dataclass
class _Task:
    name: str
    vocab: int
    context: int
    batch: callable           # rng -> (inputs (B, T) int32, targets (B, T) int32 with IGNORE)
    evaluate: callable        # (model, final) -> (test loss, test accuracy); final: the last epoch
    config: dict


def _train(task: _Task, seed: int, epochs: int, steps: int, batch_size: int, lr: float, d_model: int, heads: int,
           layers: int, ff: int, out_dir, capture: bool, progress: bool, title: str, micro_batches: int = 1,
           data_parallel: bool = False) -> tuple[TrainResult, TinyGPT]:
    started = time.perf_counter()
    if epochs < 1 or steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, steps and batch size must be positive and lr above 0 "
                         f"(got {epochs}, {steps}, {batch_size}, {lr})")
    if capture and (micro_batches != 1 or data_parallel):
        raise ValueError("capture records one whole-batch step: use it without micro-batches and data-parallel")
    rt = default_runtime()
    rt.kernels.reset_usage()
    manual_seed(seed)
    model = TinyGPT(task.vocab, task.context, d_model, heads, layers, ff)
    par = ParallelStep(model, micro_batches=micro_batches, data_parallel=data_parallel)
    par.shard(np.arange(batch_size))  # refuses a batch that the ranks and micro-batches cannot share
    split = par.pieces > 1 or data_parallel
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = CosineAnnealingLR(opt, T_max=epochs * steps)
    rng = np.random.default_rng(seed)  # every rank draws the same global batches
    x0, y0 = task.batch(rng, batch_size)
    rows = batch_size // par.pieces if split else batch_size
    xb, yb = zeros(rows, x0.shape[1], dtype="int32"), zeros(rows * y0.shape[1], dtype="int32")
    loss_sum = zeros(1)

    def step(x, y):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, task.vocab), y, ignore_index=IGNORE)
        loss.backward()
        opt.step()
        sched.step()
        with no_grad():
            ew.launch("x + y", [loss_sum, loss.reshape(1)], out=loss_sum)

    def split_step(x, y):  # micro-batches and ranks: hlx_vulkan.training.parallel
        def loss_of(idx):
            with no_grad():
                xb.copy_(x[idx])
                yb.copy_(y[idx].reshape(-1))
            return F.cross_entropy(par.model(xb).reshape(-1, task.vocab), yb, ignore_index=IGNORE)
        loss = par.backward(np.arange(batch_size), loss_of)
        opt.step()
        sched.step()
        with no_grad():
            ew.launch("x + y", [loss_sum, loss], out=loss_sum)

    graph = None
    history = []
    bar = _progress(epochs, progress and par.is_main, task.name)
    batch = (x0, y0)
    for epoch in range(epochs):
        with no_grad():
            ew.launch("CT(0)", [loss_sum], out=loss_sum)
        for s in range(steps):
            if batch is None:
                batch = task.batch(rng, batch_size)
            if split:
                split_step(*batch)
                batch = None
                continue
            with no_grad():
                xb.copy_(batch[0])
                yb.copy_(batch[1].reshape(-1))
            batch = None
            if graph is not None:
                graph.replay()
            elif capture:
                with capture_graph(rt) as graph:  # records the step and runs it once
                    step(xb, yb)
            else:
                step(xb, yb)
        train_loss = float(par.mean_over_ranks(loss_sum).numpy()[0]) / steps
        test_loss, test_acc = task.evaluate(model, epoch == epochs - 1)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "test_loss": test_loss,
                        "test_accuracy": test_acc})
        if bar is not None:
            bar.set_postfix(loss=f"{train_loss:.4f}", test_acc=f"{test_acc:.4f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if graph is not None:
        graph.destroy()
    rt.synchronize()
    state = model.state_dict()
    entries = {name: {"dtype": t.dtype.name, "shape": list(t.shape), "digest": t.digest(DEFAULT), "digest_version": DEFAULT}
               for name, t in state.items()}
    result = TrainResult(test_accuracy=history[-1]["test_accuracy"], weights_digest=state_digest(entries),
                         history=history)
    result.seconds = time.perf_counter() - started
    result.rank = par.rank
    info = rt.ctx.info
    kernels = sorted({(k.name, k.digest) for k in rt.kernels.used()})
    result.manifest = {
        "hlx_version": __version__, "task": task.name, "seed": seed, "epochs": epochs, "steps_per_epoch": steps,
        "batch_size": batch_size, "lr": lr, "d_model": d_model, "heads": heads, "layers": layers, "ff": ff,
        "capture": capture, "world_size": par.world_size, "micro_batches": micro_batches,
        "data_parallel": data_parallel, **task.config,
        "device": {"name": info["device_name"], "type": info["device_type"], "driver": info["driver"],
                   "api_version": info["api_version"]},
        "test_accuracy": result.test_accuracy, "weights_digest": result.weights_digest,
        "tensors": entries, "kernels": [{"name": n, "spirv_sha256": d} for n, d in kernels],
        "history": history,
    }
    if out_dir is not None and par.is_main:
        _write_outputs(out_dir, state, result, title)
    return result, model


# --- sort --------------------------------------------------------------------------------
SEP = 10  # the separator token after the digits
EPOCH_TEST = 200  # test sequences decoded after each epoch but the last (which decodes them all)


def _is_test(seqs: np.ndarray) -> np.ndarray:
    """A fixed 1 in 8 of all sequences (by a hash of the digits) is kept for testing."""
    h = np.zeros(len(seqs), np.uint64)
    for col in seqs.T:
        h = (h * np.uint64(1000003) + col.astype(np.uint64)) & np.uint64(0xFFFFFFFF)
    return ((h * np.uint64(2654435761)) >> np.uint64(13)) % np.uint64(8) == 0


def _sort_examples(seqs: np.ndarray):
    n = seqs.shape[1]
    full = np.concatenate([seqs, np.full((len(seqs), 1), SEP), np.sort(seqs, axis=1)], axis=1).astype(np.int32)
    x, y = full[:, :-1], full[:, 1:].copy()
    y[:, :n] = IGNORE  # no loss on predicting the unsorted digits
    return x, y


def sort_test_set(length: int, count: int, seed: int = 12345) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((0, length), np.int64)
    while len(out) < count:
        s = rng.integers(0, 10, (4 * count, length))
        out = np.concatenate([out, s[_is_test(s)]])
    return out[:count]


def greedy_sort(model: TinyGPT, seqs: np.ndarray) -> np.ndarray:
    """The model's answer for each sequence, one greedy token at a time."""
    n = seqs.shape[1]
    tokens = np.concatenate([seqs, np.full((len(seqs), 1), SEP), np.zeros((len(seqs), n - 1), np.int64)], axis=1)
    with no_grad():
        for t in range(n):
            logits = model(from_numpy(tokens.astype(np.int32)))
            pred = red.argmax(logits[:, n + t, :], axis=-1).numpy()
            if t < n - 1:
                tokens[:, n + 1 + t] = pred
            else:
                last = pred
    return np.concatenate([tokens[:, n + 1:], last[:, None]], axis=1)


def train_sort(seed: int = 0, length: int = 5, epochs: int = 8, steps: int = 25, batch_size: int = 256,
               lr: float = 1e-2, d_model: int = 32, heads: int = 2, layers: int = 2, ff: int = 64,
               test_count: int = 1000, out_dir: str | None = None, capture: bool = False,
               progress: bool = True, micro_batches: int = 1, data_parallel: bool = False) -> TrainResult:
    """Train the sorter; ``test_accuracy`` is the fraction of the ``test_count`` held-out sequences
    sorted exactly by greedy decoding (after earlier epochs, of the first 200 of them).
    ``micro_batches`` and ``data_parallel`` as for digits (hlx_vulkan.training.parallel): N ranks
    give the bits of ``micro_batches=N`` in one process."""
    if not 2 <= length <= 32:
        raise ValueError(f"sequence length must be 2 to 32, got {length}")
    test = sort_test_set(length, test_count)
    tx, ty = _sort_examples(test)

    def batch(rng, size):
        seqs = rng.integers(0, 10, (size, length))
        fresh = seqs[_is_test(seqs)]
        while len(fresh):  # redraw test sequences, so training never sees one
            seqs[_is_test(seqs)] = rng.integers(0, 10, (len(fresh), length))
            fresh = seqs[_is_test(seqs)]
        return _sort_examples(seqs)

    def evaluate(model, final):
        with no_grad():
            logits = model(from_numpy(tx))
            loss = F.cross_entropy(logits.reshape(-1, 11), from_numpy(ty.reshape(-1)), ignore_index=IGNORE).item()
        seqs = test if final else test[:EPOCH_TEST]  # greedy decoding is the costly part
        answers = greedy_sort(model, seqs)
        return float(loss), float(np.mean(np.all(answers == np.sort(seqs, axis=1), axis=1)))

    task = _Task("sort", 11, 2 * length, batch, evaluate, {"length": length, "test_sequences": test_count})
    result, _ = _train(task, seed, epochs, steps, batch_size, lr, d_model, heads, layers, ff, out_dir, capture,
                       progress, "hlx train sort: exact-sort accuracy", micro_batches, data_parallel)
    return result


# --- text --------------------------------------------------------------------------------
def train_text(path: str, seed: int = 0, context: int = 64, epochs: int = 8, steps: int = 25, batch_size: int = 32,
               lr: float = 1e-2, d_model: int = 64, heads: int = 4, layers: int = 2, ff: int = 128,
               sample_chars: int = 200,
               temperature: float = 0.8, out_dir: str | None = None, capture: bool = False,
               progress: bool = True, micro_batches: int = 1, data_parallel: bool = False) -> tuple[TrainResult, str]:
    """Train a character-level model on the text file at ``path``; returns the result and a sample
    of ``sample_chars`` characters drawn from it (seeded)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    if len(text) < 2 * context + 2 or len(chars) < 2:
        raise ValueError(f"{path}: {len(text)} characters, {len(chars)} distinct; need at least {2 * context + 2} "
                         "and 2")
    lookup = {c: i for i, c in enumerate(chars)}
    data = np.array([lookup[c] for c in text], np.int32)
    cut = max(context + 1, int(0.9 * len(data)))
    if len(data) - cut < context + 1:
        cut = len(data) - context - 1
    train_data, test_data = data[:cut], data[cut:]
    V = len(chars)

    def windows(arr, starts):
        idx = starts[:, None] + np.arange(context + 1)
        w = arr[idx]
        return w[:, :-1], w[:, 1:]

    def batch(rng, size):
        return windows(train_data, rng.integers(0, len(train_data) - context, size))

    ev_starts = np.linspace(0, len(test_data) - context - 1, min(64, len(test_data) - context), dtype=np.int64)
    ex, ey = windows(test_data, ev_starts)

    def evaluate(model, final):
        with no_grad():
            logits = model(from_numpy(ex))
            flat = logits.reshape(-1, V)
            loss = F.cross_entropy(flat, from_numpy(ey.reshape(-1))).item()
            pred = red.argmax(flat, axis=-1).numpy()
        return float(loss), float(np.mean(pred == ey.reshape(-1)))

    task = _Task("text", V, context, batch, evaluate, {"file_chars": len(text), "vocab": V, "context": context})
    result, model = _train(task, seed, epochs, steps, batch_size, lr, d_model, heads, layers, ff, out_dir, capture,
                           progress, "hlx train text: next-character accuracy", micro_batches, data_parallel)
    sample = sample_text(model, chars, text[:context // 2] if text else "", sample_chars, temperature, seed)
    result.manifest["sample"] = sample
    return result, sample


def sample_text(model: TinyGPT, chars, prompt: str, count: int, temperature: float, seed: int) -> str:
    """``count`` characters after ``prompt``, each drawn from the model's softmax at ``temperature``
    with a host generator seeded by ``seed``."""
    lookup = {c: i for i, c in enumerate(chars)}
    ids = [lookup[c] for c in prompt if c in lookup] or [0]
    rng = np.random.default_rng(seed)
    out = []
    with no_grad():
        for _ in range(count):
            window = np.array(ids[-model.context:], np.int32)[None, :]
            logits = model(from_numpy(window))[0, -1]
            probs = F.softmax(logits * (1.0 / temperature), dim=-1).numpy().astype(np.float64)
            nxt = int(rng.choice(len(chars), p=probs / probs.sum()))
            ids.append(nxt)
            out.append(chars[nxt])
    return prompt + "".join(out)



def run_cli(args) -> int:
    """``hlx train sort`` / ``hlx train text FILE`` (the arguments of ``hlx train``)."""
    opts = {"seed": args.seed, "out_dir": args.out, "capture": args.capture, "progress": not args.quiet,
            "micro_batches": args.micro_batches, "data_parallel": args.data_parallel}
    for name in ("epochs", "steps", "lr"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.batch_size != 64:  # the flag's default is the digits MLP's
        opts["batch_size"] = args.batch_size
    if args.jit:
        raise ValueError(f"--jit is for digits; use --capture with {args.task}")
    digits_only = [flag for flag, used in (("--model", args.model != "mlp"), ("--hidden", args.hidden is not None),
                                           ("--strict", args.strict)) if used]
    if digits_only:
        raise ValueError(f"{', '.join(digits_only)}: not for hlx train {args.task} (digits only, for now)")
    if args.task == "sort":
        if args.file is not None:
            raise ValueError("hlx train sort takes no file")
        result = train_sort(**opts)
        if result.rank != 0:
            return 0  # rank 0 reports for the whole run
        print(f"test sequences sorted exactly (greedy decoding): {100 * result.test_accuracy:.2f}% "
              f"({result.seconds:.1f} s on {result.manifest['device']['name']})")
    else:
        if args.file is None:
            raise ValueError("hlx train text needs a text file: hlx train text FILE")
        result, sample = train_text(args.file, **opts)
        if result.rank != 0:
            return 0
        print(f"held-out next-character accuracy: {100 * result.test_accuracy:.2f}% "
              f"({result.seconds:.1f} s on {result.manifest['device']['name']})")
        print("sample:")
        print(sample)
    if args.out:
        print(f"wrote {args.out}/training.png, model.safetensors, manifest.json")
    print(f"weights digest: {result.weights_digest}")
    return 0


__all__ = ["TinyGPT", "greedy_sort", "run_cli", "sample_text", "sort_test_set", "train_sort", "train_text"]

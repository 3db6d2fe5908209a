"""The ``hlx`` command.

Example::

    $ hlx info          # Vulkan devices, what each supports, which one is chosen
    $ hlx info --json
    $ hlx train digits --seed 0 --out run/   # trains an MLP, writes plot, checkpoint, manifest
    $ hlx verify run/                        # checks the checkpoint against the manifest's digests
    $ mpirun -n 2 hlx train digits --data-parallel   # same weights digest as --micro-batches 2
    $ hlx warmup                             # builds the common kernels ahead of first use
"""

from __future__ import annotations

import argparse
import json
import sys

from . import errors
from .vk.instance import Instance, loader_version
from .vk.api import version_str
from .vk.physical import choose, describe


def _info(args) -> int:
    inst = Instance(enable_validation=False)
    try:
        devices = [describe(h, i, inst.handle) for i, h in enumerate(inst.physical_devices())]
        try:
            selection = choose(devices)
            chosen, why, passed = selection.chosen, selection.how, dict((d.index, r) for d, r in selection.passed_over)
        except errors.DeviceSelectionError as exc:
            chosen, why, passed = None, str(exc), {}
        if args.json:
            print(json.dumps({
                "loader_version": version_str(loader_version()),
                "devices": [d.summary() for d in devices],
                "chosen": None if chosen is None else chosen.index, "reason": why,
                "passed_over": {str(k): v for k, v in passed.items()},
            }, indent=2, default=str))
            return 0 if chosen is not None else 1
        print(f"Vulkan loader {version_str(loader_version())}, {len(devices)} device(s)")
        for d in devices:
            mark = "*" if chosen is not None and d.index == chosen.index else " "
            print(f"{mark} [{d.index}] {d.name}  ({d.type}, Vulkan {d.api_version_str}, {d.driver_name} {d.driver_info})")
            feats = ", ".join(k for k, v in d.features.items() if v) or "none"
            print(f"      features: {feats}")
            lim = d.limits
            print(f"      workgroup: size {lim['max_compute_workgroup_size']}, "
                  f"{lim['max_compute_workgroup_invocations']} invocations, "
                  f"{lim['max_compute_shared_memory_size']} B shared, subgroup {lim['subgroup_size']}; "
                  f"storage range {lim['max_storage_buffer_range']} B")
            fc = ", ".join(k for k, v in d.float_controls.items() if v) or "none"
            print(f"      float controls: {fc}")
            if d.index in passed:
                print(f"      passed over: {passed[d.index]}")
        print(f"chosen: [{chosen.index}] {chosen.name} ({why})" if chosen is not None else f"no device chosen: {why}")
        return 0 if chosen is not None else 1
    finally:
        inst.destroy()


def _train(args) -> int:
    if args.task in ("sort", "text"):
        from .training.transformer import run_cli
        try:
            return run_cli(args)
        except Exception as exc:
            _abort_other_ranks(args, exc)
            raise
    from .training.digits import train_digits
    try:
        result = train_digits(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              hidden=args.hidden, out_dir=args.out, capture=args.capture, jit=args.jit,
                              progress=not args.quiet, model=args.model, strict=args.strict,
                              micro_batches=args.micro_batches, data_parallel=args.data_parallel)
    except Exception as exc:
        _abort_other_ranks(args, exc)
        raise
    if result.rank != 0:
        return 0  # rank 0 reports for the whole run
    print(f"test accuracy: {100 * result.test_accuracy:.2f}% after {result.manifest['epochs']} epochs "
          f"({result.seconds:.1f} s on {result.manifest['device']['name']})")
    if args.out:
        print(f"wrote {args.out}/training.png, model.safetensors, manifest.json")
    print(f"weights digest: {result.weights_digest}")
    return 0


def _abort_other_ranks(args, exc) -> None:
    """Under mpirun, one rank's error ends every rank (MPI_Abort), naming the rank; else nothing."""
    from . import distributed
    if getattr(args, "data_parallel", False) and distributed.is_initialized() and distributed.group().world_size > 1:
        distributed.abort(exc)


def _verify(args) -> int:
    import os

    from .checkpoint import file_digest, load_checkpoint, read_manifest, state_digest
    manifest_path = os.path.join(args.dir, "manifest.json")
    manifest = read_manifest(manifest_path)
    ckpt = manifest.get("checkpoint", {})
    if not isinstance(ckpt, dict):
        raise errors.CheckpointError(f"{manifest_path}: 'checkpoint' is not an object")
    file, sha = ckpt.get("file", "model.safetensors"), ckpt.get("sha256")
    # The checkpoint must sit beside its manifest: a manifest does not get to name any file on disk.
    if not isinstance(file, str) or not file.isprintable() or file in ("", ".", "..") or os.path.basename(file) != file:
        raise errors.CheckpointError(f"{manifest_path}: checkpoint file {file!r} is not a file name in {args.dir}")
    if sha is not None and not isinstance(sha, str):
        raise errors.CheckpointError(f"{manifest_path}: checkpoint sha256 {sha!r} is not a string")
    path = os.path.join(args.dir, file)
    if sha is not None and file_digest(path) != sha:
        raise errors.CheckpointError(f"{path}: the file's SHA-256 differs from the manifest's")
    state = load_checkpoint(path, manifest)
    digest = state_digest(manifest["tensors"])
    if digest != manifest.get("weights_digest"):
        raise errors.CheckpointError(f"{manifest_path}: the tensors' digests do not give the recorded weights digest")
    print(f"ok: {len(state)} tensors match {manifest_path}")
    print(f"weights digest: {digest}")
    if args.recompute:
        from .runtime import default_runtime
        from .training.recompute import recompute_run
        n = recompute_run(args.dir)
        print(f"ok: re-ran the strict run on {default_runtime().ctx.info['device_name']}: {n} recorded digests match")
    return 0


def _warmup(args) -> int:
    from .compiler import cache_dir
    from .warmup import warm
    print(f"{warm()} kernels built into {cache_dir()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hlx", description="hlx-vulkan: deterministic ML compute on Vulkan")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="list Vulkan devices, what each supports, and which one would be chosen")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)
    train = sub.add_parser("train", help="train a model reproducibly on the default device")
    train.add_argument("task", choices=["digits", "sort", "text"],
                       help="digits: an MLP on scikit-learn's 8x8 handwritten digits; sort: a small transformer "
                       "that sorts digit sequences; text FILE: a character-level transformer on a text file")
    train.add_argument("file", nargs="?", help="text: the UTF-8 text file to learn")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                       help="digits: mlp, two hidden layers; cnn, three convolutions with batch norm and max pooling")
    train.add_argument("--epochs", type=int, default=None, help="default: 30 (mlp), 8 (cnn, sort, text)")
    train.add_argument("--steps", type=int, default=None, help="sort, text: steps per epoch (default 25)")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=None, help="default: 2e-3 (mlp), 4e-3 (cnn), 1e-2 (sort, text)")
    train.add_argument("--hidden", type=int, default=None, help="hidden units (mlp, default 256) or the width of "
                       "the cnn (default 16)")
    train.add_argument("--out", metavar="DIR", help="write training.png, model.safetensors and manifest.json here")
    replay = train.add_mutually_exclusive_group()
    replay.add_argument("--capture", action="store_true", help="record one training step and replay it")
    replay.add_argument("--jit", action="store_true", help="wrap the training step in hv.jit (eager, captured, "
                        "then replayed with each batch fed in)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--strict", action="store_true", help="strict mode: the same weights, bit for bit, on every "
                       "device (slower); the run can be re-verified with hlx verify DIR --recompute")
    from .training.parallel import add_arguments as add_parallel_arguments
    add_parallel_arguments(train)  # --micro-batches, --data-parallel
    train.set_defaults(func=_train)
    verify = sub.add_parser("verify", help="check a training run's checkpoint against its manifest")
    verify.add_argument("dir", help="the --out directory of `hlx train`")
    verify.add_argument("--recompute", action="store_true", help="re-run the recorded strict run on this device "
                        "and confirm every recorded digest (names the first tensor that differs)")
    verify.set_defaults(func=_verify)
    warmup = sub.add_parser("warmup", help="build the library's common kernels into the shader cache")
    warmup.set_defaults(func=_warmup)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (errors.HlxError, ValueError) as exc:
        print(f"hlx: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

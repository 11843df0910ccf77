"""Command line: `python -m gan_core {train,sample,memorization,export,toy,metrics,fid,project,mix,edit} ...` (also `gan-core`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .config import ARCH_PRESETS, preset_names

    p = sub.add_parser("train", help="train a GAN on a folder or zip of images")
    p.add_argument("--data", required=True, help="folder, zip, or prepared dataset zip")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, grids, stats.jsonl)")
    p.add_argument("--preset", choices=preset_names(),
                   help="starting config (default: --arch's preset, cpu-tiny for stylegan2)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="start from a stored config instead of a preset: a run's <out>/config.json, or a job's "
                        "config (`diggan jobs config JOB_ID`, or the JSON of GET /v1/jobs/{id}); flags given "
                        "next to it override it")
    p.add_argument("--arch", choices=list(ARCH_PRESETS),
                   help="backbone: stylegan2 (cpu-tiny), sngan (sngan-32) or biggan (biggan-32, class-conditional)")
    p.add_argument("--class-folders", action=argparse.BooleanOptionalAction, default=None,
                   help="read one folder per class as labels (default: on for biggan, off otherwise)")
    p.add_argument("--kimg", type=float, help="training length in thousands of real images")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from")
    p.add_argument("--init-from", type=Path, metavar="PATH",
                   help="start from pretrained weights: a .pt checkpoint of ours or an NVlabs stylegan2-ada-pytorch "
                        ".pkl (read without running its code); the run takes its network shape and resizes the "
                        "images to its resolution")
    p.add_argument("--augment", choices=["ada", "diffaugment", "none"])
    p.add_argument("--diggan-weight", type=float, help="DigGAN lambda (0 disables the penalty; DIG is still logged)")
    p.add_argument("--diggan-alpha", type=float, help="DigGAN moving-average factor in (0, 1]")
    p.add_argument("--diggan-interval", type=int, help="apply DigGAN every k minibatches")
    p.add_argument("--r1-gamma", type=float, help="R1 weight (0 disables)")
    p.add_argument("--reg", action="append", default=[], metavar="NAME:WEIGHT[:INTERVAL][:k=v,...]",
                   help="add a regularizer or change the config's one of that name (what is left out keeps the "
                        "config's value, else the regularizer's default), e.g. --reg lecam:0.3:1:decay=0.99 "
                        "--reg r2:1 (names: diggan r1 r2 gp1 dragan lecam nice maskedgan; weight 0 removes one)")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--tick-kimg", type=float)
    p.add_argument("--snapshot-ticks", type=int)
    p.add_argument("--snapshot-kimg", type=float, help="a snapshot every this many kimg (rounded to whole ticks)")
    p.add_argument("--metrics", help="comma-separated snapshot metrics, e.g. kid,fid")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    p.add_argument("--gpus", type=int, help="processes sharing each minibatch, one per GPU (cuda:0..N-1, NCCL); on "
                                            "the CPU N gloo processes, which is for testing the multi-GPU path")
    p.add_argument("--batch-gpu", type=int, help="images one process runs at a time (NVlabs --batch-gpu); less than "
                                                 "batch / gpus accumulates gradients over several passes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override any config field, e.g. --set network.channel_base=4096")
    p.set_defaults(func=_cmd_train)


def build_train_config(args: argparse.Namespace, pretrained_network: dict[str, Any] | None = None) -> Any:
    """The run's TrainConfig: the flags as a gan_core.request.TrainRequest, resolved by the rules the API uses."""
    from .request import resolve_train_config

    return resolve_train_config(train_request(args, pretrained_network))


def train_request(args: argparse.Namespace, pretrained_network: dict[str, Any] | None = None) -> Any:
    """The TrainRequest the `train` flags ask for (a flag left out is None: the starting config's value)."""
    from .request import RegularizerRequest, TrainRequest

    changes = []
    if any(v is not None for v in (args.diggan_weight, args.diggan_alpha, args.diggan_interval)):
        changes.append(RegularizerRequest("diggan", args.diggan_weight, args.diggan_interval,
                                          {} if args.diggan_alpha is None else {"alpha": args.diggan_alpha}))
    if args.r1_gamma is not None:
        changes.append(RegularizerRequest("r1", args.r1_gamma))
    changes += [parse_reg(spec) for spec in args.reg]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    return TrainRequest(
        preset=args.preset, arch=args.arch,
        base=load_config_file(args.config) if getattr(args, "config", None) else None,
        kimg=args.kimg, seed=args.seed, augment=args.augment or None, batch_size=args.batch or None,
        gpus=getattr(args, "gpus", None), batch_gpu=getattr(args, "batch_gpu", None),
        metrics=metrics, regularizer_changes=changes, tick_kimg=args.tick_kimg or None,
        snapshot_ticks=args.snapshot_ticks or None, snapshot_kimg=getattr(args, "snapshot_kimg", None),
        pretrained_network=pretrained_network, overrides=parse_set(args.set))


def load_config_file(path: Path) -> Any:
    """A stored TrainConfig: a run's config.json, a job's `config`, or a whole job record holding one."""
    from .config import config_from_dict

    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {path}: not JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "network" not in data:
        data = data["config"]  # GET /v1/jobs/{id} as saved: the job record around its config
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object (a TrainConfig), got {type(data).__name__}")
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--config {path}: {e}") from None


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """['network.channel_base=4096', 'augment.kind=none'] -> {key: JSON value, or the raw string}."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def parse_reg(spec: str) -> Any:
    """'lecam:0.3:1:decay=0.99' -> RegularizerRequest (what is left out is resolved with the config)."""
    from .regularizers import REGISTRY
    from .request import RegularizerRequest
    from .specs import parse_regularizer_spec

    usage = f"--reg {spec!r}: use NAME:WEIGHT[:INTERVAL][:k=v,...] with NAME in {', '.join(sorted(REGISTRY))}"
    try:
        name, weight, interval, params = parse_regularizer_spec(spec)
    except ValueError:
        raise ValueError(usage) from None
    if name not in REGISTRY:
        raise ValueError(usage)
    return RegularizerRequest(name, weight, interval, params)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import CONDITIONAL_ARCHS, config_to_dict, fit_to_dataset, validate_config
    from .data import prepare_dataset

    pretrained = _load_init_from(args.init_from) if args.init_from else None
    cfg = build_train_config(args, dataclasses.asdict(pretrained.network) if pretrained is not None else None)
    class_folders = args.class_folders
    if class_folders is None:
        class_folders = cfg.network.arch in CONDITIONAL_ARCHS and cfg.network.num_classes != 1
    dataset = prepare_dataset(args.data, resolution=cfg.network.resolution, class_folders=class_folders)
    for w in dataset.warnings:
        print(f"warning: {w}", file=sys.stderr)
    cfg = fit_to_dataset(cfg, dataset.num_classes)  # biggan: num_classes from the class folders
    validate_config(cfg)  # before any process starts: one message, not one per rank
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    from .training.distributed import SINGLE

    if cfg.gpus == 1:
        return _train_process(SINGLE, args.device, args, cfg, dataset, pretrained)

    import tempfile

    import torch

    from .data import save_prepared
    from .training.ranks import HelperRanks, follower_rank
    from .training.trainer import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and torch.cuda.device_count() < cfg.gpus:
        raise ValueError(f"--gpus {cfg.gpus} needs {cfg.gpus} GPUs (one process each); this machine has "
                         f"{torch.cuda.device_count()}")
    if device.type == "cpu":
        print(f"note: {cfg.gpus} gloo processes on the CPU (tests the multi-GPU path; no faster than one)",
              file=sys.stderr)
    # As a service worker runs a job: this process is rank 0 (progress bar, TensorBoard, Ctrl-C, the printed
    # result) and ranks 1..N-1 follow beside it. They start with Ctrl-C ignored (a child inherits that): rank 0
    # turns Ctrl-C into a stop request that every rank honours at the same point, with a checkpoint.
    with tempfile.TemporaryDirectory(prefix="gan_core-train-") as tmp:
        ds_file = save_prepared(dataset, Path(tmp) / "dataset.zip")  # the followers read it, as a worker's do
        follower_args = (config_to_dict(cfg), str(ds_file), str(Path(tmp) / "follower"),
                         str(args.resume) if args.resume else None)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            helpers = HelperRanks(cfg.gpus, follower_rank, follower_args, device=str(device))
        finally:
            signal.signal(signal.SIGINT, previous)
        with helpers:
            return _train_process(helpers.info, helpers.device, args, cfg, dataset, pretrained)


def _train_process(info: Any, device: Any, args: argparse.Namespace, cfg: Any, dataset: Any, pretrained: Any) -> int:
    """`train` in this process, which is rank 0 when the job has several (`info.world > 1`): the progress bar,
    TensorBoard, Ctrl-C and the printed result are its; the follower ranks take its weights."""
    from .training import Trainer, TrainingCallbacks, TrainingDiverged
    from .training.tensorboard import TensorBoardCallbacks

    interrupted = threading.Event()
    tensorboard = TensorBoardCallbacks(args.out / "tensorboard")  # beside stats.jsonl

    class CliCallbacks(TrainingCallbacks):
        def on_tick(self, stats: dict[str, Any]) -> None:
            tensorboard.on_tick(stats)

        def on_snapshot(self, snap: Any) -> None:
            tensorboard.on_snapshot(snap)
            extra = f" metrics={json.dumps(snap.metrics)}" if snap.metrics else ""
            print(f"\nsnapshot kimg={snap.kimg:.3f} checkpoint={snap.checkpoint} grid={snap.grid}{extra}",
                  file=sys.stderr)

        def should_stop(self) -> bool:
            return interrupted.is_set()

        def on_rollback(self, rollback: Any) -> None:
            where = rollback.checkpoint or "the start of training"
            print(f"\n{rollback.reason}; rolled back once to {where} with halved learning rates "
                  f"(g_lr={rollback.g_lr:g}, d_lr={rollback.d_lr:g})", file=sys.stderr)

    def on_interrupt(signum: int, frame: Any) -> None:
        if interrupted.is_set():  # a second Ctrl-C: stop now, without the checkpoint
            raise KeyboardInterrupt
        interrupted.set()
        print("\ninterrupted: storing a checkpoint at the end of this step (Ctrl-C again to quit without one)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    trainer = Trainer(cfg, dataset, args.out, device=device, callbacks=CliCallbacks(),
                      resume_from=args.resume, progress=True, dist=info if info.world > 1 else None)
    if pretrained is not None and args.resume is None:  # a resumed run has its own weights
        from .training.transfer import apply_pretrained

        apply_pretrained(trainer, pretrained)
        print(f"starting from pretrained {pretrained.kind} {args.init_from}", file=sys.stderr)
    try:
        result = trainer.run()
    except TrainingDiverged as exc:  # diverged again after its one rollback: the message says what to change
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
        tensorboard.close()
    _write_curves(args.out)
    print(json.dumps({"kimg": result.kimg, "last_checkpoint": str(result.last_checkpoint),
                      "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None}))
    if interrupted.is_set():
        resume = [a for a in sys.argv[1:] if a] if sys.argv[1:2] == ["train"] else ["train", "..."]
        if "--resume" in resume:
            del resume[resume.index("--resume"):resume.index("--resume") + 2]
        print(f"stopped at {result.kimg:.3f} kimg; resume with:\n  python -m gan_core {' '.join(resume)} "
              f"--resume {result.last_checkpoint}", file=sys.stderr)
        code = 130  # the shell's code for "ended by Ctrl-C"
    else:
        code = 0
    return code


def _load_init_from(path: Path) -> Any:
    """--init-from's weights; the run takes their network (gan_core.request checks --set network.* against it)."""
    from .training.transfer import load_pretrained

    pretrained = load_pretrained(path)
    for note in pretrained.notes:
        print(f"note: {note}", file=sys.stderr)
    return pretrained


def _write_curves(run_dir: Path) -> None:
    """curves.png next to the checkpoints, from stats.jsonl (and metrics.jsonl)."""
    try:
        from .metrics.curves import plot_curves
    except ImportError:
        return
    def read(p: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    plot_curves(read(run_dir / "stats.jsonl"), read(run_dir / "metrics.jsonl"), run_dir / "curves.png")


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--seeds", default="0-15", help="e.g. 0-15 or 1,5,9")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (1 = none)")
    p.add_argument("--class", dest="class_index", metavar="K[,K...]",
                   help="class-conditional checkpoints (biggan): one class for every seed, or one per seed "
                        "(default: each seed's own class)")
    p.add_argument("--out", required=True, type=Path, help="grid .png, a folder for single images, or .gif with --interp")
    p.add_argument("--interp", help="A,B: write an interpolation GIF between two seeds")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from .sampling import (
        generate_images,
        interpolation_frames,
        load_generator,
        make_grid,
        parse_seeds,
        save_gif,
        to_pil_list,
    )

    G, _ = load_generator(args.ckpt, args.device)
    classes = _parse_classes(args.class_index)
    if args.interp:
        a, b = (int(s) for s in args.interp.split(","))
        if isinstance(classes, list):
            raise ValueError("--interp keeps one class along the walk: give --class K")
        save_gif(interpolation_frames(G, a, b, steps=args.frames, psi=args.psi, class_index=classes), args.out)
    else:
        seeds = parse_seeds(args.seeds)
        images = generate_images(G, seeds, psi=args.psi, class_index=classes)
        if args.out.suffix.lower() in (".png", ".jpg", ".jpeg"):
            args.out.parent.mkdir(parents=True, exist_ok=True)
            make_grid(images).save(args.out)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            for seed, img in zip(seeds, to_pil_list(images)):
                img.save(args.out / f"seed{seed:04d}.png")
    print(json.dumps({"out": str(args.out)}))
    return 0


def _parse_classes(spec: str | None) -> int | list[int] | None:
    """'3' -> 3 (every seed); '0,1,2' -> one class per seed; None -> None."""
    if spec is None:
        return None
    try:
        values = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--class {spec!r}: give a class index, or one per seed separated by commas") from None
    if not values:
        raise ValueError("--class needs a class index")
    return values[0] if len(values) == 1 and "," not in spec else values


def _add_memorization(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memorization", help="nearest training images of generated samples (paper Fig. 7)")
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--data", required=True, help="the training folder or zip")
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--k", type=int, default=3, help="neighbours per sample")
    p.add_argument("--out", required=True, type=Path, help="directory for memorization.png and memorization.json")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_memorization)


def _cmd_memorization(args: argparse.Namespace) -> int:
    from .data import prepare_dataset
    from .metrics import memorization_report
    from .sampling import generate_images, load_generator, parse_seeds

    G, cfg = load_generator(args.ckpt, args.device)
    dataset = prepare_dataset(args.data, resolution=cfg.network.resolution)
    generated = generate_images(G, parse_seeds(args.seeds), psi=args.psi)
    report, grid = memorization_report(generated, dataset.images, k=args.k, train_names=dataset.names)
    args.out.mkdir(parents=True, exist_ok=True)
    grid.save(args.out / "memorization.png")
    (args.out / "memorization.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"png": str(args.out / "memorization.png"), "nearest_distance": report["nearest_distance"],
                      "suspected_copies": report["suspected_copies"]}))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint's generator as safetensors+config or TorchScript")
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--format", required=True, choices=["safetensors", "torchscript", "onnx"],
                   help="safetensors: weights + config.json (loads back with gan_core.export.load_safetensors); "
                        "torchscript: one .pt that only needs torch; onnx: one .onnx for onnxruntime (StyleGAN2)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="torchscript: a .pt file; onnx: a .onnx file; "
                        "safetensors: a .zip, or a folder for model.safetensors + config.json")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint
    from .training.checkpoint import CheckpointError

    try:
        config = export_checkpoint(args.ckpt, args.format, args.out)
    except CheckpointError as exc:  # missing, corrupt, or not ours: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "format": args.format, "z_dim": config["z_dim"],
                      "c_dim": config["c_dim"], "resolution": config["resolution"]}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gan-core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_memorization(sub)
    _add_export(sub)
    from .toy.cli import add_cli as add_toy_cli  # --variant paper (default) | legacy

    add_toy_cli(sub)
    from .metrics import cli as metrics_cli

    metrics_cli.add_cli(sub)
    from .latents.cli import add_cli as add_latents_cli  # project, mix, edit

    add_latents_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

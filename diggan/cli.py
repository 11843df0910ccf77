"""`diggan`: the command line for diggan-service.

    diggan datasets upload faces/ --name faces
    diggan jobs create --dataset ds_... --preset cpu-tiny --kimg 1 --regularizer diggan:100
    diggan jobs watch job_...                 # live progress bar (kimg) with loss_G/loss_D/DIG/KID
    diggan samples job_... --n 16 --psi 0.7 -o grid.png
    diggan checkpoints download job_... -o model.pt
    diggan export job_... --format torchscript -o generator.pt

Server and key: --url / --api-key, or $DIGGAN_URL / $DIGGAN_API_KEY (default http://127.0.0.1:8000).
Data commands print JSON on stdout; progress and messages go to stderr.
Exit codes: 0 ok; 1 the watched job failed; 2 a usage or API error (the server's message is printed);
3 the watched job was canceled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from diggan.client import EXPORT_FORMATS, TERMINAL, DigganClient, DigganError
from gan_core.specs import parse_regularizer_spec, parse_seeds  # torch-free

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_CANCELED = 0, 1, 2, 3


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def parse_regularizer(spec: str) -> dict[str, Any]:
    """'diggan:100', 'r1:1:16' or 'lecam:0.3:1:decay=0.99' -> a RegularizerSpec body."""
    name, weight, interval, params = parse_regularizer_spec(spec, "--regularizer")
    reg: dict[str, Any] = {"name": name, "weight": weight}
    if interval is not None:
        reg["interval"] = interval
    return {**reg, **params}


# ----------------------------------------------------------------------------- commands


def cmd_datasets_upload(c: DigganClient, a: argparse.Namespace) -> int:
    ds = c.upload_dataset(a.path, name=a.name, resolution=a.resolution)
    for w in ds.get("warnings") or []:
        print(f"warning: {w}", file=sys.stderr)
    _print_json(ds)
    return EXIT_OK


def cmd_datasets_list(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.list_datasets())
    return EXIT_OK


def cmd_datasets_get(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.get_dataset(a.dataset_id))
    return EXIT_OK


def cmd_jobs_create(c: DigganClient, a: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if a.config_json:
        try:
            fields = json.loads(a.config_json)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config-json is not valid JSON ({e})") from None
        if not isinstance(fields, dict):
            raise ValueError("--config-json must be a JSON object, e.g. '{\"tick_kimg\": 0.2}'")
    for key in ("preset", "kimg", "seed", "augment", "batch_size", "tick_kimg", "snapshot_kimg"):
        if getattr(a, key) is not None:
            fields[key] = getattr(a, key)
    if a.regularizer:
        fields["regularizers"] = [parse_regularizer(r) for r in a.regularizer]
    fields.pop("dataset_id", None)
    job = c.create_job(a.dataset, idempotency_key=a.idempotency_key, **fields)
    if a.watch:
        print(f"created {job['id']}", file=sys.stderr)
        return watch(c, job["id"])
    _print_json(job)
    return EXIT_OK


def cmd_jobs_list(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.list_jobs(status=a.status, limit=a.limit, all_pages=a.all))
    return EXIT_OK


def cmd_jobs_get(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.get_job(a.job_id))
    return EXIT_OK


def cmd_jobs_cancel(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.cancel_job(a.job_id))
    return EXIT_OK


def cmd_jobs_metrics(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.job_metrics(a.job_id))
    return EXIT_OK


def cmd_jobs_watch(c: DigganClient, a: argparse.Namespace) -> int:
    return watch(c, a.job_id)


def watch(c: DigganClient, job_id: str) -> int:
    """A tqdm bar in kimg, fed by the job's SSE stream; the final job JSON on stdout."""
    from tqdm import tqdm

    job = c.get_job(job_id)
    progress = job.get("progress") or {}
    total = float(progress.get("total_kimg") or (job.get("config") or {}).get("kimg") or 1.0)
    bar = tqdm(total=total, initial=float(progress.get("kimg") or 0),
               unit="kimg", desc=job_id, file=sys.stderr, dynamic_ncols=True, mininterval=0,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}]{postfix}")
    post: dict[str, str] = {}
    seen_ckpt = None
    status = job["status"]
    latest = (job.get("latest_tick") or {}).get("tick") or 0
    try:
        for ev in c.events(job_id, since_tick=max(0, int(latest) - 1)):  # replay the newest tick for the postfix
            if ev.event == "state" and isinstance(ev.data, dict):
                job, status = ev.data, ev.data.get("status", status)
                total = (job.get("progress") or {}).get("total_kimg")
                if total:
                    bar.total = float(total)
                post["status"] = status
                if status in TERMINAL:  # a last tick may follow; the record's kimg is final already
                    bar.n = float((job.get("progress") or {}).get("kimg") or bar.n)
                if job.get("latest_checkpoint") and job["latest_checkpoint"] != seen_ckpt:
                    seen_ckpt = job["latest_checkpoint"]
                    post.update(_snapshot_metrics(c, job_id, seen_ckpt))
            elif ev.event == "tick" and isinstance(ev.data, dict):
                t = ev.data
                bar.n = float(t.get("kimg") or bar.n)
                for key, label in (("loss_G", "loss_G"), ("loss_D", "loss_D"), ("dig", "DIG")):
                    if t.get(key) is not None:
                        post[label] = f"{t[key]:.4g}"
            elif ev.event == "end":
                status = (ev.data or {}).get("status", status) if isinstance(ev.data, dict) else status
            bar.set_postfix(post, refresh=False)
            bar.refresh()
    finally:
        bar.close()
    job = c.get_job(job_id)
    status = job.get("status", status)
    _print_json(job)
    if status == "succeeded":
        print(f"job {job_id} succeeded at {job['progress']['kimg']:g} kimg; latest checkpoint "
              f"{job.get('latest_checkpoint')}", file=sys.stderr)
        return EXIT_OK
    if status == "canceled":
        print(f"error: job {job_id} was canceled at {job['progress']['kimg']:g} kimg", file=sys.stderr)
        return EXIT_CANCELED
    if status in TERMINAL:
        print(f"error: job {job_id} failed: {job.get('error') or 'no message'}", file=sys.stderr)
        return EXIT_FAILED
    print(f"error: the event stream of job {job_id} ended while it is {status}", file=sys.stderr)
    return EXIT_ERROR


def _snapshot_metrics(c: DigganClient, job_id: str, name: str) -> dict[str, str]:
    """KID/FID of a new checkpoint, when the job computes snapshot metrics."""
    try:
        ckpt = next((x for x in c.list_checkpoints(job_id) if x["name"] == name), None)
    except DigganError:
        return {}
    metrics = (ckpt or {}).get("metrics") or {}
    return {k.upper(): f"{metrics[k]:.4g}" for k in ("kid", "fid") if metrics.get(k) is not None}


def cmd_samples(c: DigganClient, a: argparse.Namespace) -> int:
    seeds = parse_seeds(a.seeds) if a.seeds else None
    data = c.samples(a.job_id, n=a.n, psi=a.psi, seeds=seeds, checkpoint=a.checkpoint, nrow=a.nrow,
                     format="zip" if a.zip else "grid")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    _print_json({"out": str(out), "bytes": len(data), "seeds": seeds or list(range(a.n)), "psi": a.psi,
                 "checkpoint": a.checkpoint})
    return EXIT_OK


def cmd_checkpoints_list(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.list_checkpoints(a.job_id))
    return EXIT_OK


def cmd_checkpoints_download(c: DigganClient, a: argparse.Namespace) -> int:
    path, info = c.download_checkpoint(a.job_id, a.out or Path.cwd(), a.name)
    _print_json({"path": str(path), "name": info["name"], "sha256": info["sha256"], "size": info["size"],
                 "kimg": info["kimg"]})
    return EXIT_OK


def cmd_export(c: DigganClient, a: argparse.Namespace) -> int:
    out = Path(a.out or f"{a.job_id}-{a.checkpoint}.{'pt' if a.format == 'torchscript' else 'zip'}")
    c.export(a.job_id, out, format=a.format, checkpoint=a.checkpoint)
    _print_json({"out": str(out), "format": a.format, "checkpoint": a.checkpoint, "bytes": out.stat().st_size})
    return EXIT_OK


# ------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # The connection options are accepted before or after the subcommand.
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--url", default=argparse.SUPPRESS, help="server URL (default $DIGGAN_URL or http://127.0.0.1:8000)")
    conn.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (default $DIGGAN_API_KEY)")
    conn.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request (default 120)")

    parser = argparse.ArgumentParser(prog="diggan", description=__doc__, parents=[conn],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = parser.add_subparsers(dest="group", required=True, metavar="{datasets,jobs,samples,checkpoints,export}")

    def leaf(sub: argparse._SubParsersAction, name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[conn])
        p.set_defaults(func=func)
        return p

    ds = groups.add_parser("datasets", help="upload and list datasets").add_subparsers(dest="cmd", required=True)
    p = leaf(ds, "upload", cmd_datasets_upload, "upload a folder of images or a .zip")
    p.add_argument("path", type=Path, help="a folder of images (zipped on the fly) or a .zip")
    p.add_argument("--name", help="dataset name (default: the folder or file name)")
    p.add_argument("--resolution", type=int, help="power of two in [32, 1024] (default: from the images)")
    leaf(ds, "list", cmd_datasets_list, "your datasets")
    leaf(ds, "get", cmd_datasets_get, "one dataset").add_argument("dataset_id")

    jobs = groups.add_parser("jobs", help="start, follow and cancel training jobs").add_subparsers(dest="cmd", required=True)
    p = leaf(jobs, "create", cmd_jobs_create, "start a training job")
    p.add_argument("--dataset", required=True, help="dataset id (from `diggan datasets upload`)")
    p.add_argument("--preset", help="cpu-tiny, low-shot-256, paper256, ... (server default otherwise)")
    p.add_argument("--kimg", type=float, help="training length, thousands of real images shown")
    p.add_argument("--regularizer", action="append", metavar="NAME:WEIGHT[:INTERVAL][:k=v,...]",
                   help="repeatable; replaces the preset's list, e.g. --regularizer diggan:100 --regularizer r1:1")
    p.add_argument("--seed", type=int)
    p.add_argument("--augment", choices=["ada", "diffaugment", "none"])
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--tick-kimg", dest="tick_kimg", type=float)
    p.add_argument("--snapshot-kimg", dest="snapshot_kimg", type=float)
    p.add_argument("--config-json", help="any other job fields as a JSON object, e.g. '{\"g_lr\": 0.001, "
                                         "\"metrics\": [\"kid\"]}' (flags win over it)")
    p.add_argument("--idempotency-key", help="makes a retried create return the same job")
    p.add_argument("--watch", action="store_true", help="then follow it as `diggan jobs watch` does")
    p = leaf(jobs, "list", cmd_jobs_list, "your jobs, newest first")
    p.add_argument("--status", choices=["queued", "running", "cancelling", "succeeded", "failed", "canceled"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--all", action="store_true", help="every page")
    leaf(jobs, "get", cmd_jobs_get, "one job (config, versions, progress)").add_argument("job_id")
    leaf(jobs, "watch", cmd_jobs_watch, "progress bar until the job ends (exit 0 only if it succeeds)").add_argument("job_id")
    leaf(jobs, "cancel", cmd_jobs_cancel, "stop a job at its next tick (it keeps a final checkpoint)").add_argument("job_id")
    leaf(jobs, "metrics", cmd_jobs_metrics, "tick series and snapshot metrics").add_argument("job_id")

    p = leaf(groups, "samples", cmd_samples, "generate a grid of samples from a checkpoint")
    p.add_argument("job_id")
    p.add_argument("--n", type=int, default=16, help="seeds 0..n-1 (ignored with --seeds)")
    p.add_argument("--seeds", help="e.g. 0-15 or 1,5,9")
    p.add_argument("--psi", type=float, default=0.7, help="truncation (1 = none)")
    p.add_argument("--checkpoint", default="latest", help="latest, best, or a checkpoint name")
    p.add_argument("--nrow", type=int, help="grid columns")
    p.add_argument("--zip", action="store_true", help="one PNG per seed, zipped, instead of a grid")
    p.add_argument("-o", "--out", required=True, help="output file, e.g. grid.png")

    ck = groups.add_parser("checkpoints", help="list and download checkpoints").add_subparsers(dest="cmd", required=True)
    leaf(ck, "list", cmd_checkpoints_list, "a job's checkpoints").add_argument("job_id")
    p = leaf(ck, "download", cmd_checkpoints_download, "download a checkpoint (sha256-verified, atomic)")
    p.add_argument("job_id")
    p.add_argument("name", nargs="?", default="latest", help="latest (default), best, or a checkpoint name")
    p.add_argument("-o", "--out", help="file or folder (default: ./<job>-<name>)")

    p = leaf(groups, "export", cmd_export, "download the generator as TorchScript or safetensors")
    p.add_argument("job_id")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="torchscript: one .pt that needs only torch; safetensors: zip of weights + config.json")
    p.add_argument("--checkpoint", default="latest", help="latest, best, or a checkpoint name")
    p.add_argument("-o", "--out", help="output file (default: ./<job>-<checkpoint>.pt|.zip)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = DigganClient(getattr(args, "url", None), getattr(args, "api_key", None),
                          timeout=getattr(args, "timeout", 120.0))
    try:
        return int(args.func(client, args))
    except DigganError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted (the job keeps running on the server; `diggan jobs cancel` stops it)", file=sys.stderr)
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

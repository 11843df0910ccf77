"""`diggan`: the command line for diggan-service.

    diggan datasets upload faces/ --name faces
    diggan jobs create --dataset ds_... --preset cpu-tiny --kimg 1 --regularizer diggan:100
    diggan jobs watch job_...                 # live progress bar (kimg) with loss_G/loss_D/DIG/KID
    diggan samples job_... --n 16 --psi 0.7 -o grid.png
    diggan checkpoints download job_... -o model.pt
    diggan export job_... --format onnx -o generator.onnx        # or torchscript, safetensors
    diggan project job_... face.jpg --steps 300 --distance pixel --watch -o out/
    diggan latents list job_...                # save | get | download | image | edit | interpolate | delete
    diggan mix job_... --rows 85,100,75 --cols 55,821 --styles 0-6 -o grid.png
    diggan edit job_... --latent lat_... --direction 0 --strengths -3,0,3 -o strip.png

Server and key: --url / --api-key, or $DIGGAN_URL / $DIGGAN_API_KEY (default http://127.0.0.1:8000).
Data commands print JSON on stdout; progress and messages go to stderr.
Exit codes: 0 ok; 1 the watched job failed; 2 a usage or API error (the server's message is printed);
3 the watched job was canceled.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from diggan.client import EXPORT_FORMATS, TERMINAL, DigganClient, DigganError, Job, Projection
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
    for key in ("preset", "kimg", "seed", "augment", "batch_size", "tick_kimg", "snapshot_kimg", "freeze_d_layers",
                "gpus", "batch_gpu"):
        if getattr(a, key) is not None:
            fields[key] = getattr(a, key)
    if a.init_from:
        fields["init_from"] = parse_init_from(a.init_from)
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


def cmd_jobs_config(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.get_job(a.job_id)["config"])  # the resolved TrainConfig: `gan_core train --config FILE` reruns it
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
                job = cast(Job, ev.data)  # a state event carries the job's record, as GET /v1/jobs/{id}
                status = ev.data.get("status", status)
                new_total = (job.get("progress") or {}).get("total_kimg")
                if new_total:
                    bar.total = float(new_total)
                post["status"] = status
                if status in TERMINAL:  # a last tick may follow; the record's kimg is final already
                    bar.n = float((job.get("progress") or {}).get("kimg") or bar.n)
                ckpt = job.get("latest_checkpoint")
                if ckpt and ckpt != seen_ckpt:
                    seen_ckpt = ckpt
                    post.update(_snapshot_metrics(c, job_id, ckpt))
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
    suffix = {"torchscript": "pt", "safetensors": "zip", "onnx": "onnx"}[a.format]
    out = Path(a.out or f"{a.job_id}-{a.checkpoint}.{suffix}")
    c.export(a.job_id, out, format=a.format, checkpoint=a.checkpoint)
    _print_json({"out": str(out), "format": a.format, "checkpoint": a.checkpoint, "bytes": out.stat().st_size})
    return EXIT_OK


def parse_init_from(spec: str) -> dict[str, Any]:
    """'model_...' or 'job_...[:latest|best|NAME]' -> an init_from body."""
    if spec.startswith("model_") and ":" not in spec:
        return {"model": spec}
    if spec.startswith("job_"):
        job, _, ckpt = spec.partition(":")
        return {"job": job, **({"checkpoint": ckpt} if ckpt else {})}
    raise ValueError(f"--init-from {spec!r}: give a model id (model_...) or a job id with an optional checkpoint "
                     "(job_...:best)")


def parse_refs(spec: str, what: str) -> list[int | str]:
    """'85,100,lat_0188...,3-5' -> [85, 100, 'lat_0188...', 3, 4, 5]: seeds (and ranges) or latent ids."""
    refs: list[int | str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("lat_"):
            refs.append(part)
            continue
        try:
            refs.extend(parse_seeds(part))
        except ValueError:
            raise ValueError(f"{what} {part!r}: give seeds (7, 0-3) or latent ids (lat_...)") from None
    if not refs:
        raise ValueError(f"{what}: give at least one seed or latent id")
    return refs


def parse_strengths(spec: str) -> list[float]:
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--strengths {spec!r}: give numbers separated by commas, e.g. -3,0,3") from None
    if not values:
        raise ValueError("--strengths needs at least one value")
    return values


def _write(out: str | Path, data: bytes) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def cmd_project(c: DigganClient, a: argparse.Namespace) -> int:
    p = c.project(a.job_id, a.images, checkpoint=a.checkpoint, steps=a.steps, w_plus=a.w_plus, distance=a.distance,
                  seed=a.seed)
    if not a.watch:
        _print_json(p)
        return EXIT_OK
    print(f"projection {p['id']}: {len(p['images'])} image(s), {p['config']['steps']} steps each, "
          f"{p['config']['distance']} distance", file=sys.stderr)
    return watch_projection(c, a.job_id, p["id"], a.out)


def cmd_projections_watch(c: DigganClient, a: argparse.Namespace) -> int:
    return watch_projection(c, a.job_id, a.projection_id, a.out)


def watch_projection(c: DigganClient, job_id: str, projection_id: str, out: str | None) -> int:
    """A tqdm bar in steps fed by the projection's event stream; the final projection JSON on stdout, and with
    `out` the reconstructions (and progress GIFs) written there."""
    from tqdm import tqdm

    p = c.get_projection(job_id, projection_id)
    bar = tqdm(total=p["progress"]["total_steps"], initial=p["progress"]["steps_done"], unit="step", desc=projection_id,
               file=sys.stderr, dynamic_ncols=True, mininterval=0,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} steps [{elapsed}<{remaining}]{postfix}")
    try:
        for ev in c.projection_events(job_id, projection_id):
            if ev.event == "state" and isinstance(ev.data, dict):
                p = cast(Projection, ev.data)  # a state event carries the projection's record
                prog = p.get("progress") or {}
                bar.n = int(prog.get("steps_done") or 0)
                post = {"status": p.get("status")}
                if prog.get("distance") is not None:
                    post["dist"] = f"{prog['distance']:.4g}"
                done = sum(1 for i in p.get("images") or [] if i.get("status") == "done")
                post["images"] = f"{done}/{len(p.get('images') or [])}"
                bar.set_postfix(post, refresh=False)
                bar.refresh()
    finally:
        bar.close()
    p = c.get_projection(job_id, projection_id)
    if out:
        folder = Path(out)
        for im in p["images"]:
            if im.get("status") == "done":
                i = im["index"]
                _write(folder / f"{projection_id}-{i}-reconstruction.png",
                       c.projection_image(job_id, projection_id, "reconstruction.png", i))
                _write(folder / f"{projection_id}-{i}-progress.gif",
                       c.projection_image(job_id, projection_id, "progress.gif", i))
                c.download_latent(job_id, im["latent_id"], folder / f"{im['latent_id']}.npy")
    _print_json(p)
    status = p["status"]
    if status == "succeeded":
        dists = ", ".join(f"{i['distance']:.4g}" for i in p["images"] if i.get("distance") is not None)
        print(f"projection {projection_id} succeeded; distance(s) {dists}; latents "
              f"{', '.join(i['latent_id'] for i in p['images'] if i.get('latent_id'))}", file=sys.stderr)
        return EXIT_OK
    if status == "canceled":
        print(f"error: projection {projection_id} was canceled", file=sys.stderr)
        return EXIT_CANCELED
    if status == "failed":
        print(f"error: projection {projection_id} failed: {p.get('error') or 'no message'}", file=sys.stderr)
        return EXIT_FAILED
    print(f"error: the event stream of projection {projection_id} ended while it is {status}", file=sys.stderr)
    return EXIT_ERROR


def cmd_projections_get(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.get_projection(a.job_id, a.projection_id))
    return EXIT_OK


def cmd_projections_list(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.list_projections(a.job_id))
    return EXIT_OK


def cmd_projections_cancel(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.cancel_projection(a.job_id, a.projection_id))
    return EXIT_OK


def cmd_latents_list(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.list_latents(a.job_id))
    return EXIT_OK


def cmd_latents_get(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.get_latent(a.job_id, a.latent_id))
    return EXIT_OK


def cmd_latents_save(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.save_latent(a.job_id, a.seed, psi=a.psi, checkpoint=a.checkpoint, name=a.name))
    return EXIT_OK


def cmd_latents_delete(c: DigganClient, a: argparse.Namespace) -> int:
    c.delete_latent(a.job_id, a.latent_id)
    _print_json({"deleted": a.latent_id})
    return EXIT_OK


def cmd_latents_download(c: DigganClient, a: argparse.Namespace) -> int:
    out = c.download_latent(a.job_id, a.latent_id, a.out or f"{a.latent_id}.npy")
    _print_json({"out": str(out), "bytes": out.stat().st_size})
    return EXIT_OK


def cmd_latents_image(c: DigganClient, a: argparse.Namespace) -> int:
    out = _write(a.out, c.latent_image(a.job_id, a.latent_id, psi=a.psi, checkpoint=a.checkpoint))
    _print_json({"out": str(out), "latent": a.latent_id, "psi": a.psi})
    return EXIT_OK


def cmd_latents_edit(c: DigganClient, a: argparse.Namespace) -> int:
    _print_json(c.edit_latent(a.job_id, a.latent_id, a.direction, a.strength, layers=a.layers, name=a.name,
                              checkpoint=a.checkpoint))
    return EXIT_OK


def cmd_latents_interpolate(c: DigganClient, a: argparse.Namespace) -> int:
    ends = [parse_refs(spec, name) for spec, name in ((a.a, "A"), (a.b, "B"))]
    if any(len(e) != 1 for e in ends):
        raise ValueError("give one latent id or seed for each end")
    ref_a, ref_b = ends[0][0], ends[1][0]
    out = _write(a.out, c.interpolate_latents(a.job_id, ref_a, ref_b, steps=a.steps, psi=a.psi,
                                              checkpoint=a.checkpoint))
    _print_json({"out": str(out), "a": ref_a, "b": ref_b, "steps": a.steps})
    return EXIT_OK


def cmd_mix(c: DigganClient, a: argparse.Namespace) -> int:
    rows, cols = parse_refs(a.rows, "--rows"), parse_refs(a.cols, "--cols")
    out = _write(a.out, c.mixing_grid(a.job_id, rows, cols, styles=a.styles, psi=a.psi, checkpoint=a.checkpoint))
    _print_json({"out": str(out), "rows": rows, "cols": cols, "styles": a.styles, "psi": a.psi})
    return EXIT_OK


def cmd_directions(c: DigganClient, a: argparse.Namespace) -> int:
    d = c.directions(a.job_id, k=a.k, layers=a.layers, checkpoint=a.checkpoint)
    if not a.vectors:
        for x in d["directions"]:
            x.pop("vector", None)
    _print_json(d)
    return EXIT_OK


def cmd_edit(c: DigganClient, a: argparse.Namespace) -> int:
    source: int | str = a.latent if a.latent is not None else a.seed
    strengths = parse_strengths(a.strengths)
    out = _write(a.out, c.edit_strip(a.job_id, source, a.direction, strengths, layers=a.layers, psi=a.psi,
                                     checkpoint=a.checkpoint))
    _print_json({"out": str(out), "source": source, "direction": a.direction, "strengths": strengths})
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
    groups = parser.add_subparsers(dest="group", required=True, metavar="{datasets,jobs,samples,checkpoints,export,"
                                   "project,projections,latents,mix,directions,edit}")

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
    p.add_argument("--gpus", type=int, help="GPUs sharing each minibatch (at most the server's DIGGAN_MAX_JOB_GPUS)")
    p.add_argument("--batch-gpu", dest="batch_gpu", type=int,
                   help="images one GPU runs at a time; less than batch size / gpus accumulates gradients")
    p.add_argument("--tick-kimg", dest="tick_kimg", type=float)
    p.add_argument("--snapshot-kimg", dest="snapshot_kimg", type=float)
    p.add_argument("--config-json", help="any other job fields as a JSON object, e.g. '{\"g_lr\": 0.001, "
                                         "\"metrics\": [\"kid\"]}' (flags win over it)")
    p.add_argument("--init-from", metavar="MODEL|JOB[:CKPT]",
                   help="start from pretrained weights: a model id (model_...) or a job id, e.g. job_...:best")
    p.add_argument("--freeze-d", dest="freeze_d_layers", type=int, metavar="N",
                   help="Freeze-D: keep D's first N layers fixed while fine-tuning (needs --init-from)")
    p.add_argument("--idempotency-key", help="makes a retried create return the same job")
    p.add_argument("--watch", action="store_true", help="then follow it as `diggan jobs watch` does")
    p = leaf(jobs, "list", cmd_jobs_list, "your jobs, newest first")
    p.add_argument("--status", choices=["queued", "running", "cancelling", "succeeded", "failed", "canceled"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--all", action="store_true", help="every page")
    leaf(jobs, "get", cmd_jobs_get, "one job (config, versions, progress)").add_argument("job_id")
    leaf(jobs, "config", cmd_jobs_config, "the job's resolved training config as JSON (save it and run "
         "`gan_core train --config FILE --data ... --out ...` to train it locally)").add_argument("job_id")
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

    p = leaf(groups, "export", cmd_export, "download the generator as TorchScript, safetensors or ONNX")
    p.add_argument("job_id")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="torchscript: one .pt that needs only torch; safetensors: zip of weights + config.json; "
                        "onnx: one .onnx for onnxruntime (stylegan2)")
    p.add_argument("--checkpoint", default="latest", help="latest, best, or a checkpoint name")
    p.add_argument("-o", "--out", help="output file (default: ./<job>-<checkpoint>.pt|.zip|.onnx)")

    _add_editing(groups, leaf)
    return parser


def _allow_negative_lists(p: argparse.ArgumentParser) -> None:
    # Let "--strengths -3,0,3" through: argparse otherwise takes "-3,0,3" for an option.
    p._negative_number_matcher = re.compile(r"^-\d[\d.,\-eE]*$")  # type: ignore[attr-defined]


def _add_editing(groups: argparse._SubParsersAction, leaf: Any) -> None:
    """project, projections, latents, mix, directions, edit."""
    p = leaf(groups, "project", cmd_project, "project image(s) into a job's W space (a background job on the server)")
    p.add_argument("job_id")
    p.add_argument("images", nargs="+", type=Path, help="image files (centre-cropped, resized to the generator's size)")
    p.add_argument("--checkpoint", default="latest", help="latest, best, or a checkpoint name")
    p.add_argument("--steps", type=int, help="optimisation steps per image (server default 1000, as NVlabs)")
    p.add_argument("--w-plus", action="store_true", help="one w per layer (W+): reconstructs more, edits less cleanly")
    p.add_argument("--distance", choices=["inception+pixel", "inception", "pixel", "discriminator"],
                   help="what is minimised (server default inception+pixel; pixel is ~8x faster on a CPU)")
    p.add_argument("--seed", type=int, help="the optimisation's seed (default 303, as NVlabs)")
    p.add_argument("--watch", action="store_true", help="follow it with a progress bar until it ends")
    p.add_argument("-o", "--out", help="with --watch: a folder for the reconstructions, progress GIFs and latents")

    pr = groups.add_parser("projections", help="follow, list and cancel projections").add_subparsers(dest="cmd", required=True)
    for name, func, text in (("get", cmd_projections_get, "one projection"),
                             ("cancel", cmd_projections_cancel, "stop a projection (finished images are kept)")):
        q = leaf(pr, name, func, text)
        q.add_argument("job_id")
        q.add_argument("projection_id")
    q = leaf(pr, "watch", cmd_projections_watch, "progress bar until it ends (exit 0 only if it succeeds)")
    q.add_argument("job_id")
    q.add_argument("projection_id")
    q.add_argument("-o", "--out", help="a folder for the reconstructions, progress GIFs and latents")
    leaf(pr, "list", cmd_projections_list, "a job's projections").add_argument("job_id")

    lt = groups.add_parser("latents", help="saved W / W+ latents of a job").add_subparsers(dest="cmd", required=True)
    leaf(lt, "list", cmd_latents_list, "a job's latents, newest first").add_argument("job_id")
    for name, func, text in (("get", cmd_latents_get, "one latent (JSON)"),
                             ("delete", cmd_latents_delete, "delete a latent")):
        q = leaf(lt, name, func, text)
        q.add_argument("job_id")
        q.add_argument("latent_id")
    q = leaf(lt, "save", cmd_latents_save, "save a seed's W latent (truncated by --psi)")
    q.add_argument("job_id")
    q.add_argument("--seed", type=int, required=True)
    q.add_argument("--psi", type=float, default=0.7, help="truncation (the samples' default 0.7)")
    q.add_argument("--checkpoint", default="latest")
    q.add_argument("--name")
    q = leaf(lt, "download", cmd_latents_download, "the latent's values as float32 .npy")
    q.add_argument("job_id")
    q.add_argument("latent_id")
    q.add_argument("-o", "--out", help="file (default ./<latent>.npy)")
    q = leaf(lt, "image", cmd_latents_image, "render a latent as a PNG")
    q.add_argument("job_id")
    q.add_argument("latent_id")
    q.add_argument("--psi", type=float, default=1.0, help="truncation (1: as saved)")
    q.add_argument("--checkpoint", default="latest")
    q.add_argument("-o", "--out", required=True)
    q = leaf(lt, "edit", cmd_latents_edit, "apply a SeFa direction to a latent and save the result as a new latent")
    q.add_argument("job_id")
    q.add_argument("latent_id")
    q.add_argument("--direction", type=int, required=True)
    q.add_argument("--strength", type=float, required=True)
    q.add_argument("--layers", help="style layers, e.g. 0-3 (default: all but the last ToRGB)")
    q.add_argument("--name")
    q.add_argument("--checkpoint", default="latest")
    _allow_negative_lists(q)
    q = leaf(lt, "interpolate", cmd_latents_interpolate, "an animated GIF walking in W between two latents or seeds")
    q.add_argument("job_id")
    q.add_argument("a", help="a latent id or a seed")
    q.add_argument("b", help="a latent id or a seed")
    q.add_argument("--steps", type=int, default=16)
    q.add_argument("--psi", type=float, default=1.0)
    q.add_argument("--checkpoint", default="latest")
    q.add_argument("-o", "--out", required=True, help="e.g. walk.gif")

    p = leaf(groups, "mix", cmd_mix, "style-mixing grid: rows take the columns' --styles layers (StyleGAN Fig. 3)")
    p.add_argument("job_id")
    p.add_argument("--rows", required=True, help="seeds and/or latent ids, e.g. 85,100,75 or 0-3,lat_...")
    p.add_argument("--cols", required=True, help="seeds and/or latent ids")
    p.add_argument("--styles", default="0-6", help="layers taken from the column sources (NVlabs' default 0-6)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation of every source (NVlabs' default 1)")
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("-o", "--out", required=True, help="grid .png")

    p = leaf(groups, "directions", cmd_directions, "the top-k SeFa edit directions of a checkpoint")
    p.add_argument("job_id")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--layers", help="style layers, e.g. 0-3 (default: all but the last ToRGB)")
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("--vectors", action="store_true", help="also print the direction vectors")

    p = leaf(groups, "edit", cmd_edit, "a latent or seed along a SeFa direction at several strengths (a PNG strip)")
    p.add_argument("job_id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--latent", help="a saved latent's id (lat_...)")
    src.add_argument("--seed", type=int)
    p.add_argument("--direction", type=int, default=0, help="SeFa direction index (0: the largest eigenvalue)")
    p.add_argument("--strengths", default="-3,-1.5,0,1.5,3", help="comma-separated, e.g. -3,0,3")
    p.add_argument("--layers", help="style layers, e.g. 0-3 (default: all but the last ToRGB)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation of the source first")
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("-o", "--out", required=True, help="strip .png")
    _allow_negative_lists(p)


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

"""A small typed client for the diggan-service REST API, over httpx.

Every method raises `DigganError` (HTTP status + the server's `detail`, which says what to fix)
on an error answer, and also when the server cannot be reached (status None).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypedDict

import httpx

from diggan.sse import Event, iter_events

DEFAULT_URL = "http://127.0.0.1:8000"
EXPORT_FORMATS = ("safetensors", "torchscript", "onnx")
TERMINAL_PROJECTION = frozenset({"succeeded", "failed", "canceled"})
_SPOOL_MAX = 64 * 1024 * 1024  # a zipped folder stays in memory up to this size, then goes to a temp file


class Dataset(TypedDict, total=False):
    id: str
    name: str
    num_images: int
    resolution: int
    warnings: list[str]
    created_at: str
    size_bytes: int


class Progress(TypedDict, total=False):
    kimg: float
    total_kimg: float
    fraction: float
    eta_seconds: float | None


class Job(TypedDict, total=False):
    id: str
    dataset_id: str
    status: str  # queued | running | cancelling | succeeded | failed | canceled
    config: dict[str, Any]
    request: dict[str, Any]
    versions: dict[str, Any]
    progress: Progress
    latest_tick: dict[str, Any] | None
    error: str | None
    latest_checkpoint: str | None
    best_checkpoint: str | None


class Projection(TypedDict, total=False):
    id: str
    job_id: str
    status: str  # queued | running | succeeded | failed | canceled
    checkpoint: str
    config: dict[str, Any]  # steps, w_plus, distance, seed
    progress: dict[str, Any]  # steps_done, total_steps, fraction, eta_seconds, distance
    images: list[dict[str, Any]]  # per image: status, distance, pixel_mse, latent_id, ...
    error: str | None


class Latent(TypedDict, total=False):
    id: str
    job_id: str
    name: str | None
    kind: str  # w | w+
    shape: list[int]
    source: dict[str, Any]
    checkpoint: str


class Checkpoint(TypedDict, total=False):
    name: str
    kimg: float
    sha256: str
    size: int
    metrics: dict[str, float]
    is_best: bool
    final: bool


TERMINAL = frozenset({"succeeded", "failed", "canceled"})


class DigganError(Exception):
    """An error answer (status = its HTTP status) or an unreachable server (status None)."""

    def __init__(self, status: int | None, detail: str, body: Any = None):
        super().__init__(detail)
        self.status, self.detail, self.body = status, detail, body

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail


def _error(r: httpx.Response) -> DigganError:
    try:
        body = r.json()
        detail = str(body.get("detail") or body) if isinstance(body, dict) else str(body)
    except ValueError:
        body, detail = None, (r.text or r.reason_phrase or "error")[:1000]
    if r.status_code == 429 and r.headers.get("retry-after"):
        detail += f" (retry after {r.headers['retry-after']} s)"
    return DigganError(r.status_code, detail, body)


class DigganClient:
    """Talk to one server. `base_url`/`api_key` default to $DIGGAN_URL / $DIGGAN_API_KEY."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = (base_url or os.environ.get("DIGGAN_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("DIGGAN_API_KEY")
        headers = {"User-Agent": "diggan-client/0.1"}
        if api_key:
            # Authorization (not X-API-Key): httpx drops it on a redirect to another origin, so a
            # presigned storage URL never sees the key.
            headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DigganClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise DigganError(None, f"cannot reach {self.base_url} ({type(e).__name__}: {e}); is the server "
                                    "running? set --url or DIGGAN_URL") from None
        if r.status_code >= 400:
            raise _error(r)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw).json()

    def _download(self, path: str, dest: Path, params: dict[str, Any] | None = None,
                  expected_sha256: str | None = None) -> str:
        """Stream a GET to `dest` atomically (temp file beside it, fsync, rename); follows redirects.
        Returns the SHA-256 of the bytes; a mismatch with `expected_sha256` leaves nothing behind."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f:
                try:
                    with self._http.stream("GET", path, params=params, follow_redirects=True) as r:
                        if r.status_code >= 400:
                            r.read()
                            raise _error(r)
                        expected_sha256 = expected_sha256 or r.headers.get("x-checksum-sha256")
                        for chunk in r.iter_bytes(1 << 20):
                            f.write(chunk)
                            digest.update(chunk)
                except httpx.TransportError as e:
                    raise DigganError(None, f"download of {path} failed ({type(e).__name__}: {e}); retry") from None
                f.flush()
                os.fsync(f.fileno())
            if expected_sha256 and digest.hexdigest() != expected_sha256:
                raise DigganError(None, f"download of {path} is corrupt: sha256 {digest.hexdigest()} != "
                                        f"{expected_sha256}; retry")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    # ------------------------------------------------------------------ datasets

    def upload_dataset(self, path: str | Path, name: str | None = None, resolution: int | None = None) -> Dataset:
        """Upload a folder of images (zipped on the fly) or a .zip. The answer's `warnings` list what the
        server fixed or skipped (duplicates, tiny or non-square images...)."""
        path = Path(path)
        data: dict[str, str] = {"name": name or path.stem}
        if resolution:
            data["resolution"] = str(resolution)
        if path.is_dir():
            with _zip_folder(path) as f:
                return self._json("POST", "/v1/datasets", data=data,
                                  files={"file": (f"{path.name}.zip", f, "application/zip")})
        if path.is_file() and zipfile.is_zipfile(path):
            with path.open("rb") as f:
                return self._json("POST", "/v1/datasets", data=data, files={"file": (path.name, f, "application/zip")})
        raise DigganError(None, f"{path}: not a folder of images or a .zip")

    def list_datasets(self) -> list[Dataset]:
        return self._json("GET", "/v1/datasets")["data"]

    def get_dataset(self, dataset_id: str) -> Dataset:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    # ---------------------------------------------------------------------- jobs

    def create_job(self, dataset_id: str, *, preset: str | None = None, kimg: float | None = None,
                   regularizers: list[dict[str, Any]] | None = None, idempotency_key: str | None = None,
                   **fields: Any) -> Job:
        """Start a job; `fields` are any other JobCreate fields (seed, augment, tick_kimg, metrics, ...)."""
        body: dict[str, Any] = {"dataset_id": dataset_id, **fields}
        for key, value in (("preset", preset), ("kimg", kimg), ("regularizers", regularizers)):
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/v1/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> Job:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, status: str | None = None, limit: int = 20, all_pages: bool = False) -> list[Job]:
        """Newest first; `all_pages` follows the cursor to the end."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        out: list[Job] = []
        while True:
            page = self._json("GET", "/v1/jobs", params=params)
            out.extend(page["data"])
            if not (all_pages and page.get("has_more")):
                return out
            params["cursor"] = page["next_cursor"]

    def cancel_job(self, job_id: str) -> Job:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def job_metrics(self, job_id: str) -> dict[str, Any]:
        """{"ticks": [...], "snapshots": [...]}: per-tick losses, DIG, augment p...; snapshot metrics."""
        return self._json("GET", f"/v1/jobs/{job_id}/metrics")

    def events(self, job_id: str, since_tick: int = 0, max_retries: int = 8) -> Iterator[Event]:
        """The job's server-sent events until its `end` event: `state` (the job, at every status or
        checkpoint change), `tick` (one per tick, with losses/DIG), `end` ({"status": ...}).

        A dropped stream is resumed where it broke (Last-Event-ID / since_tick: no tick is lost or
        repeated), with backoff, up to `max_retries` consecutive failures."""
        last, failures = since_tick, 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = str(last)
            try:
                # Read timeout: the server sends a keep-alive every 15 s while nothing happens.
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", params={"since_tick": last},
                                       headers=headers, timeout=httpx.Timeout(self.timeout, read=60.0)) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise _error(r)
                    for ev in iter_events(r.iter_lines()):
                        failures = 0
                        if ev.event == "tick":
                            last = max(last, _tick_number(ev, last))
                        yield ev
                        if ev.event == "end":
                            return
            except httpx.TransportError:
                pass  # the connection broke mid-stream: reconnect below
            failures += 1
            if failures > max_retries:
                raise DigganError(None, f"lost the event stream of job {job_id} {max_retries} times in a row; "
                                        f"is {self.base_url} up?")
            time.sleep(min(0.5 * 2 ** (failures - 1), 10.0))

    # ------------------------------------------------------------------- samples

    def samples(self, job_id: str, n: int = 16, psi: float = 0.7, seeds: list[int] | None = None,
                checkpoint: str = "latest", nrow: int | None = None, format: str = "grid") -> bytes:
        """A grid PNG (format="grid") or a zip of PNGs (format="zip") for seeds 0..n-1 or `seeds`."""
        body: dict[str, Any] = {"psi": psi, "checkpoint": checkpoint, "format": format}
        if seeds is not None:
            body["seeds"] = list(seeds)
        else:
            body["n"] = n
        if nrow:
            body["nrow"] = nrow
        return self._send("POST", f"/v1/jobs/{job_id}/samples", json=body).content

    # --------------------------------------------------------------- checkpoints

    def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        return self._json("GET", f"/v1/jobs/{job_id}/checkpoints")["data"]

    def checkpoint_info(self, job_id: str, name: str = "latest") -> Checkpoint:
        """The checkpoint `name` names ('latest', 'best' or a checkpoint name)."""
        job = self.get_job(job_id)
        resolved = {"latest": job.get("latest_checkpoint"),
                    "best": job.get("best_checkpoint") or job.get("latest_checkpoint")}.get(name, name)
        ckpts = self.list_checkpoints(job_id)
        for c in ckpts:
            if c["name"] == resolved:
                return c
        names = ", ".join(c["name"] for c in ckpts[-5:]) or "none yet"
        raise DigganError(404, f"job {job_id} has no checkpoint {name!r} (it has: {names})")

    def download_checkpoint(self, job_id: str, dest: str | Path, name: str = "latest") -> tuple[Path, Checkpoint]:
        """Save a checkpoint to `dest` (a file, or a folder to put `<job>-<name>` in), verified against
        its recorded sha256. S3-backed servers answer with a presigned URL, which is followed."""
        info = self.checkpoint_info(job_id, name)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{job_id}-{info['name']}"
        self._download(f"/v1/jobs/{job_id}/checkpoints/{info['name']}", dest, params={"redirect": "true"},
                       expected_sha256=info["sha256"])
        return dest, info

    # -------------------------------------------------------------------- export

    def export(self, job_id: str, dest: str | Path, format: str = "torchscript", checkpoint: str = "latest") -> Path:
        """The generator as `torchscript` (a .pt that needs only torch), `safetensors` (a zip of
        model.safetensors + config.json) or `onnx` (a .onnx for onnxruntime; StyleGAN2), written atomically
        to `dest`."""
        dest = Path(dest)
        self._download(f"/v1/jobs/{job_id}/export", dest, params={"format": format, "checkpoint": checkpoint})
        return dest

    # --------------------------------------------------------------- projections

    def project(self, job_id: str, images: list[str | Path], *, checkpoint: str = "latest", steps: int | None = None,
                w_plus: bool = False, distance: str | None = None, seed: int | None = None) -> Projection:
        """Start projecting image files into the job's W space (a background job on the server); returns the
        queued projection. Follow it with `projection_events`, `wait_projection` or `get_projection`. The
        server's defaults: 1000 steps, distance inception+pixel ('pixel' is ~8x cheaper on a CPU)."""
        fields: dict[str, str] = {"checkpoint": checkpoint, "w_plus": "true" if w_plus else "false"}
        for key, value in (("steps", steps), ("distance", distance), ("seed", seed)):
            if value is not None:
                fields[key] = str(value)
        paths = [Path(p) for p in images]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DigganError(None, f"no such image file: {', '.join(missing)}")
        handles = [p.open("rb") for p in paths]
        try:
            files = [("file", (p.name, f, "application/octet-stream")) for p, f in zip(paths, handles)]
            return self._json("POST", f"/v1/jobs/{job_id}/projections", data=fields, files=files)
        finally:
            for f in handles:
                f.close()

    def get_projection(self, job_id: str, projection_id: str) -> Projection:
        return self._json("GET", f"/v1/jobs/{job_id}/projections/{projection_id}")

    def list_projections(self, job_id: str, limit: int = 20) -> list[Projection]:
        return self._json("GET", f"/v1/jobs/{job_id}/projections", params={"limit": limit})["data"]

    def cancel_projection(self, job_id: str, projection_id: str) -> Projection:
        return self._json("POST", f"/v1/jobs/{job_id}/projections/{projection_id}/cancel")

    def delete_projection(self, job_id: str, projection_id: str) -> None:
        self._send("DELETE", f"/v1/jobs/{job_id}/projections/{projection_id}")

    def projection_events(self, job_id: str, projection_id: str, max_retries: int = 8) -> Iterator[Event]:
        """`state` events (the projection, at every status or progress change) until `end`; a dropped stream
        is reopened (each `state` carries the whole projection, so nothing is lost)."""
        failures = 0
        while True:
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/projections/{projection_id}/events",
                                       headers={"Accept": "text/event-stream"},
                                       timeout=httpx.Timeout(self.timeout, read=60.0)) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise _error(r)
                    for ev in iter_events(r.iter_lines()):
                        failures = 0
                        yield ev
                        if ev.event == "end":
                            return
            except httpx.TransportError:
                pass
            failures += 1
            if failures > max_retries:
                raise DigganError(None, f"lost the event stream of projection {projection_id} {max_retries} times "
                                        f"in a row; is {self.base_url} up?")
            time.sleep(min(0.5 * 2 ** (failures - 1), 10.0))

    def wait_projection(self, job_id: str, projection_id: str, timeout: float | None = None) -> Projection:
        """Follow the projection to its end (events), then return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self.projection_events(job_id, projection_id):
            if deadline is not None and time.monotonic() > deadline:
                raise DigganError(None, f"projection {projection_id} did not finish within {timeout:g} s")
        return self.get_projection(job_id, projection_id)

    def projection_image(self, job_id: str, projection_id: str, which: str = "reconstruction.png",
                         index: int = 0) -> bytes:
        """`reconstruction.png`, `target.png` or `progress.gif` of image `index`."""
        return self._send("GET", f"/v1/jobs/{job_id}/projections/{projection_id}/{which}",
                          params={"index": index}).content

    # ------------------------------------------------------------------- latents

    def save_latent(self, job_id: str, seed: int, psi: float = 0.7, checkpoint: str = "latest",
                    name: str | None = None) -> Latent:
        """Save a seed's W latent, truncated by psi."""
        body: dict[str, Any] = {"seed": seed, "psi": psi, "checkpoint": checkpoint}
        if name:
            body["name"] = name
        return self._json("POST", f"/v1/jobs/{job_id}/latents", json=body)

    def list_latents(self, job_id: str, limit: int = 100) -> list[Latent]:
        return self._json("GET", f"/v1/jobs/{job_id}/latents", params={"limit": limit})["data"]

    def get_latent(self, job_id: str, latent_id: str) -> Latent:
        return self._json("GET", f"/v1/jobs/{job_id}/latents/{latent_id}")

    def delete_latent(self, job_id: str, latent_id: str) -> None:
        self._send("DELETE", f"/v1/jobs/{job_id}/latents/{latent_id}")

    def download_latent(self, job_id: str, latent_id: str, dest: str | Path) -> Path:
        """The latent's values as float32 .npy (numpy.load), written atomically."""
        dest = Path(dest)
        self._download(f"/v1/jobs/{job_id}/latents/{latent_id}/w.npy", dest)
        return dest

    def latent_image(self, job_id: str, latent_id: str, psi: float = 1.0, checkpoint: str = "latest") -> bytes:
        return self._send("GET", f"/v1/jobs/{job_id}/latents/{latent_id}/image.png",
                          params={"psi": psi, "checkpoint": checkpoint}).content

    def interpolate_latents(self, job_id: str, a: int | str, b: int | str, steps: int = 16, psi: float = 1.0,
                            checkpoint: str = "latest", duration_ms: int = 80, boomerang: bool = True) -> bytes:
        """An animated GIF walking in W from `a` to `b` (seeds or latent ids)."""
        body = {"a": a, "b": b, "steps": steps, "psi": psi, "checkpoint": checkpoint, "duration_ms": duration_ms,
                "boomerang": boomerang}
        return self._send("POST", f"/v1/jobs/{job_id}/latents/interpolation", json=body).content

    # ------------------------------------------------------------- SeFa, mixing

    def directions(self, job_id: str, k: int = 5, layers: str | None = None, checkpoint: str = "latest") -> dict[str, Any]:
        params: dict[str, Any] = {"k": k, "checkpoint": checkpoint}
        if layers:
            params["layers"] = layers
        return self._json("GET", f"/v1/jobs/{job_id}/directions", params=params)

    def edit_strip(self, job_id: str, source: int | str, direction: int, strengths: list[float],
                   layers: str | list[int] | None = None, psi: float = 1.0, checkpoint: str = "latest") -> bytes:
        """A PNG strip of `source` (a seed or a latent id) along SeFa direction `direction` at each strength."""
        body: dict[str, Any] = {"source": source, "direction": direction, "strengths": list(strengths), "psi": psi,
                                "checkpoint": checkpoint}
        if layers is not None:
            body["layers"] = layers
        return self._send("POST", f"/v1/jobs/{job_id}/edits/strip", json=body).content

    def edit_image(self, job_id: str, source: int | str, direction: int, strength: float,
                   layers: str | list[int] | None = None, psi: float = 1.0, checkpoint: str = "latest") -> bytes:
        body: dict[str, Any] = {"source": source, "direction": direction, "strength": strength, "psi": psi,
                                "checkpoint": checkpoint}
        if layers is not None:
            body["layers"] = layers
        return self._send("POST", f"/v1/jobs/{job_id}/edits/image", json=body).content

    def edit_latent(self, job_id: str, latent_id: str, direction: int, strength: float,
                    layers: str | list[int] | None = None, name: str | None = None,
                    checkpoint: str = "latest") -> Latent:
        """Apply a SeFa direction to a saved latent; the result is saved as a new latent."""
        body: dict[str, Any] = {"direction": direction, "strength": strength, "checkpoint": checkpoint}
        if layers is not None:
            body["layers"] = layers
        if name:
            body["name"] = name
        return self._json("POST", f"/v1/jobs/{job_id}/latents/{latent_id}/edit", json=body)

    def mix(self, job_id: str, row: int | str, col: int | str, styles: str | list[int] = "0-6", psi: float = 1.0,
            checkpoint: str = "latest") -> bytes:
        body = {"row": row, "col": col, "styles": styles, "psi": psi, "checkpoint": checkpoint}
        return self._send("POST", f"/v1/jobs/{job_id}/mixing", json=body).content

    def mixing_grid(self, job_id: str, rows: list[int | str], cols: list[int | str], styles: str | list[int] = "0-6",
                    psi: float = 1.0, checkpoint: str = "latest") -> bytes:
        """The style-mixing grid PNG: column sources on top, row sources on the left (seeds or latent ids)."""
        body = {"rows": list(rows), "cols": list(cols), "styles": styles, "psi": psi, "checkpoint": checkpoint}
        return self._send("POST", f"/v1/jobs/{job_id}/mixing/grid", json=body).content


def _tick_number(ev: Event, default: int) -> int:
    try:
        return int(ev.id if ev.id is not None else ev.data.get("tick"))
    except (TypeError, ValueError, AttributeError):
        return default


class _zip_folder:
    """A folder's files (recursively; hidden files skipped) as a zip in a spooled temp file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.f: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX)

    def __enter__(self) -> IO[bytes]:
        files = sorted(p for p in self.folder.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.folder).parts))
        if not files:
            raise DigganError(None, f"{self.folder} has no files to upload")
        with zipfile.ZipFile(self.f, "w", zipfile.ZIP_STORED) as zf:  # images are compressed already
            for p in files:
                zf.write(p, str(p.relative_to(self.folder)))
        self.f.seek(0)
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.close()


__all__ = ["DEFAULT_URL", "Checkpoint", "Dataset", "DigganClient", "DigganError", "Event", "Job", "Latent", "Projection"]

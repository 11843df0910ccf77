"""Convert an uploaded model file in a separate, resource-limited process.

    converted = convert_model_upload(Path("upload.bin"), Path("out/model.pt"), ModelUploadLimits())
    converted.network, converted.sha256, converted.size   # PretrainedError if the file is refused

The parent (this module's functions; no torch import, so the API process stays light) starts a
fresh interpreter - `python -m gan_core.interop.sandbox`, never fork: the API is multi-threaded -
with a clean environment (no API secrets), an empty working directory, stdin closed and its own
session. The child first applies resource limits to itself, then imports torch and runs
`load_pretrained` + `save_pretrained` (all the parser's own checks, gan_core/interop/bounds.py,
apply inside too), writes our checkpoint format to `dest` and prints one small JSON line.
The parent enforces a wall-clock timeout (killing the child's process group), trusts only that
JSON after validating every field (types, bounds, the network config through the same caps),
and checks the written file's size and SHA-256 itself.

Limits in the child
-------------------
- RLIMIT_DATA (memory): what the kernel counts is private writable memory - the heap and
  anonymous mmaps, which is where every allocation of the parser goes (torch's allocator,
  numpy, Python objects). RLIMIT_AS would also count libtorch's code and reserved address
  ranges: measured on this machine (torch 2.13 CPU, Python 3.11, one thread), importing torch
  and running a matmul needs 606 MiB of RLIMIT_AS but only 191 MiB of RLIMIT_DATA, and the
  address-space figure varies with the torch build (CUDA builds map gigabytes of code). So the
  memory limit is RLIMIT_DATA; an allocation past it fails (MemoryError / torch's "can't
  allocate memory"), which the child reports as "exceeded the memory limit".
- RLIMIT_CPU (soft; the kernel sends SIGXCPU, then SIGKILL one second later at the hard limit),
  RLIMIT_FSIZE (the converted file), RLIMIT_CORE 0 (no core dumps), RLIMIT_NOFILE 256.
- The wall-clock timeout is the parent's: a child blocked without using CPU is killed too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bounds import BoundsError, network_config_from_plain
from .errors import PretrainedError, not_a_model_message

log = logging.getLogger(__name__)
_MiB = 1 << 20
RESULT_PREFIX = "GAN_CORE_SANDBOX_RESULT "
MAX_RESULT_BYTES = 64 * 1024  # the child prints a few hundred bytes
MAX_NOTES, MAX_NOTE_CHARS, MAX_MESSAGE_CHARS = 64, 500, 4000
KINDS = ("checkpoint", "nvlabs-pkl")  # gan_core.training.transfer.KINDS (not imported: that pulls in torch)


@dataclass(frozen=True)
class ModelUploadLimits:
    """Bounds on converting one uploaded model file (each default names its source)."""

    max_upload_bytes: int = 1 << 30  # the service's max_model_upload_bytes default (1 GiB); FFHQ-1024 pkl is 364 MB
    # Measured: converting a paper1024-shaped NVlabs pkl (382 MB; G, D, G_ema) peaks at 1.53 GB RSS, about
    # 3x the weights + 250 MiB of torch; 4 GiB leaves room for 1 GiB checkpoints of ours.
    memory_bytes: int = 4 << 30
    cpu_seconds: int = 120  # the same conversion takes ~12 s of CPU here, most of it in torch.save + fsync
    wall_seconds: float = 180.0  # CPU limit + time blocked on disk
    max_output_bytes: int = 2 << 30  # the converted checkpoint (G, D, G_ema float32): ~1.05x the weights
    max_open_files: int = 256  # torch's import opens shared libraries one at a time

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ValueError(f"ModelUploadLimits.{f.name} must be a positive number, got {v!r}")
        if self.memory_bytes < 256 * _MiB:
            raise ValueError("ModelUploadLimits.memory_bytes below 256 MiB cannot even import torch (it needs ~191 MiB)")


@dataclass(frozen=True)
class ConvertedModel:
    """What the child reported, after validation, and what the parent checked on disk."""

    kind: str  # "checkpoint" | "nvlabs-pkl"
    network: dict[str, Any]  # dataclasses.asdict(NetworkConfig), within gan_core.interop.bounds
    has_discriminator: bool
    notes: list[str] = field(default_factory=list)
    sha256: str = ""  # of the file written at dest
    size: int = 0  # bytes of that file
    seconds: float = 0.0  # wall time of the conversion, child start to exit

    @property
    def resolution(self) -> int:
        return int(self.network["resolution"])


# --------------------------------------------------------------------------- parent


def _child_env(workdir: Path) -> dict[str, str]:
    """Only what Python and torch need: no API secrets, no TORCH_*/PYTHON* surprises."""
    root = Path(__file__).resolve().parents[2]  # the directory holding the gan_core package
    return {"PATH": os.defpath, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
            "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _mib(n: float) -> str:
    return f"{n / _MiB:.0f} MiB"


def convert_model_upload(upload: Path, dest: Path, limits: ModelUploadLimits = ModelUploadLimits(),
                         label: str | None = None) -> ConvertedModel:
    """Parse, validate and convert `upload` (an NVlabs .pkl or one of our .pt checkpoints) into our
    checkpoint format at `dest` (plus `dest.sha256`), in a resource-limited child process.
    Raises PretrainedError with a message for the user; `label` names the file in it."""
    upload, dest = Path(upload), Path(dest)
    label = label or upload.name
    if not upload.is_file():
        raise PretrainedError(f"no such file: {upload}")
    size = upload.stat().st_size
    if size == 0:
        raise PretrainedError(f"{label} is empty")
    if size > limits.max_upload_bytes:
        raise PretrainedError(f"{label} is {size:,} bytes, over the {limits.max_upload_bytes:,}-byte limit")
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = {"upload": str(upload.resolve()), "dest": str(dest.resolve()), "label": label,
               "max_bytes": limits.max_upload_bytes, "memory": limits.memory_bytes, "cpu": limits.cpu_seconds,
               "fsize": limits.max_output_bytes, "nofile": limits.max_open_files}
    flags = ["-P"] if sys.version_info >= (3, 11) else []  # -P: no cwd on sys.path (cwd is empty anyway)
    with tempfile.TemporaryDirectory(prefix="gan-core-sandbox-") as tmp:
        work = Path(tmp)
        stderr_path = work / "stderr.txt"
        start = time.monotonic()
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, *flags, "-s", "-m", "gan_core.interop.sandbox", json.dumps(request)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, cwd=work,
                env=_child_env(work), start_new_session=True, close_fds=True)
            timed_out = False
            try:
                out, _ = proc.communicate(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                out, _ = proc.communicate()
            finally:
                if proc.poll() is None:  # an exception in the parent (KeyboardInterrupt...): never leave it running
                    _kill_group(proc)
                    proc.wait()
        seconds = time.monotonic() - start
        tail = stderr_path.read_bytes()[-2000:].decode("utf-8", "replace")
    try:
        if timed_out:
            raise PretrainedError(f"{label} took longer than {limits.wall_seconds:g} s to convert and was stopped; "
                                  "it is not a model file this service can read (a network pickle converts in seconds)")
        result = _parse_output(out, proc.returncode, limits, label, tail)
        return _verify(result, dest, limits, label, seconds)
    except BaseException:
        dest.unlink(missing_ok=True)
        Path(str(dest) + ".sha256").unlink(missing_ok=True)
        raise


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the child and anything it started
    except (ProcessLookupError, PermissionError):
        pass


def _parse_output(out: bytes, returncode: int, limits: ModelUploadLimits, label: str, tail: str) -> dict[str, Any]:
    lines = [ln for ln in out[-MAX_RESULT_BYTES:].decode("utf-8", "replace").splitlines()
             if ln.startswith(RESULT_PREFIX)]
    if returncode != 0 or len(lines) != 1 or len(out) > MAX_RESULT_BYTES:
        log.warning("model converter for %s ended with status %s; stderr tail:\n%s", label, returncode, tail)
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise PretrainedError(f"{label} needed more than {limits.cpu_seconds} s of CPU time to convert and was "
                                  "stopped; it is not a model file this service can read")
        if returncode == -signal.SIGXFSZ:
            raise PretrainedError(f"{label} would convert to a file larger than {_mib(limits.max_output_bytes)}, the "
                                  "limit for converted models")
        why = f"signal {signal.Signals(-returncode).name}" if returncode < 0 else f"exit status {returncode}"
        if "MemoryError" in tail or "can't allocate memory" in tail or "bad_alloc" in tail:
            raise PretrainedError(f"{label} exceeded the memory limit of {_mib(limits.memory_bytes)} while converting "
                                  f"({why}); it asks for far more memory than a model file of its size needs")
        raise PretrainedError(f"{label} could not be converted: the converter stopped ({why}) on it. Upload a .pt "
                              "checkpoint from a job or an NVlabs stylegan2-ada-pytorch .pkl")
    try:
        result = json.loads(lines[0][len(RESULT_PREFIX):])
    except ValueError:
        raise PretrainedError(f"{label} could not be converted (unreadable converter result)") from None
    if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
        raise PretrainedError(f"{label} could not be converted (malformed converter result)")
    if not result["ok"]:
        error, message = result.get("error"), result.get("message")
        if error == "memory":
            raise PretrainedError(f"{label} exceeded the memory limit of {_mib(limits.memory_bytes)} while converting; "
                                  "it asks for far more memory than a model file of its size needs")
        if error == "invalid" and isinstance(message, str) and message:
            raise PretrainedError(message[:MAX_MESSAGE_CHARS])
        raise PretrainedError(f"{label} could not be read as a model; upload a .pt checkpoint from a job or an "
                              "NVlabs stylegan2-ada-pytorch .pkl")
    return result


def _verify(r: dict[str, Any], dest: Path, limits: ModelUploadLimits, label: str, seconds: float) -> ConvertedModel:
    """Every field of the child's result checked; the file checked by the parent itself."""
    expected = {"ok", "kind", "network", "has_discriminator", "notes", "sha256", "size"}
    notes = r.get("notes")
    problems = []
    if set(r) != expected:
        problems.append(f"fields {sorted(set(r) ^ expected)}")
    if r.get("kind") not in KINDS:
        problems.append("kind")
    if not isinstance(r.get("has_discriminator"), bool):
        problems.append("has_discriminator")
    if not (isinstance(notes, list) and len(notes) <= MAX_NOTES
            and all(isinstance(n, str) and len(n) <= MAX_NOTE_CHARS for n in notes)):
        problems.append("notes")
    if not (isinstance(r.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", r["sha256"])):
        problems.append("sha256")
    if not (isinstance(r.get("size"), int) and not isinstance(r.get("size"), bool)
            and 0 < r["size"] <= limits.max_output_bytes):
        problems.append("size")
    try:
        network = dataclasses.asdict(network_config_from_plain(r.get("network"), label))
    except BoundsError as exc:
        problems.append(f"network ({exc})")
        network = {}
    if problems:
        raise PretrainedError(f"{label} could not be converted (invalid converter result: {', '.join(problems)})")
    if not dest.is_file() or dest.is_symlink():
        raise PretrainedError(f"{label} could not be converted (no converted file was written)")
    size = dest.stat().st_size
    if size != r["size"] or size > limits.max_output_bytes:
        raise PretrainedError(f"{label} could not be converted (the converted file has an unexpected size)")
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != r["sha256"]:
        raise PretrainedError(f"{label} could not be converted (the converted file's checksum does not match)")
    return ConvertedModel(kind=r["kind"], network=network, has_discriminator=r["has_discriminator"],
                          notes=list(notes), sha256=r["sha256"], size=size, seconds=round(seconds, 3))


# --------------------------------------------------------------------------- child


def _apply_limits(req: dict[str, Any]) -> None:
    import resource

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        _, old_hard = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if old_hard != resource.RLIM_INFINITY:  # an unprivileged process cannot raise its hard limit
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))

    cap(resource.RLIMIT_DATA, int(req["memory"]))
    cap(resource.RLIMIT_CPU, int(req["cpu"]), int(req["cpu"]) + 1)  # soft: SIGXCPU; hard: SIGKILL a second later
    cap(resource.RLIMIT_FSIZE, int(req["fsize"]) + (1 << 20))  # + the .sha256 sidecar and temp-file slack
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NOFILE, int(req["nofile"]))


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def _precheck(upload: Path, max_bytes: int, label: str) -> Any:
    """Everything that needs no torch, before torch is imported: most hostile files are refused here
    in a fraction of a second, and one costs the service no torch import. For an NVlabs pkl that is
    the whole validation short of tensor values (returned, so it is not done twice); for a .pt,
    the zip layout and data.pkl's opcodes (torch.load does the rest)."""
    from .nvlabs_pickle import NVlabsImportError, validate_nvlabs_pickle
    from .torch_zip import check_torch_zip

    size = upload.stat().st_size
    if size > max_bytes:
        raise PretrainedError(f"{label} is {size:,} bytes, over the {max_bytes:,}-byte limit")
    with open(upload, "rb") as f:
        head = f.read(4)
    try:
        if head == b"PK\x03\x04":
            with open(upload, "rb") as f:
                check_torch_zip(f.read(max_bytes + 1), label)
            return None
        if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return validate_nvlabs_pickle(upload, max_bytes, label)
    except (BoundsError, NVlabsImportError) as exc:
        raise PretrainedError(str(exc) if str(exc).startswith(label) else f"{label}: {exc}") from None
    raise PretrainedError(not_a_model_message(label))


def _child(argv: list[str]) -> int:
    req = json.loads(argv[0])
    _apply_limits(req)  # before anything reads the upload or imports torch: all of it runs inside the limits
    label = str(req["label"])[:200]
    try:
        upload, dest = Path(req["upload"]), Path(req["dest"])
        validated = _precheck(upload, int(req["max_bytes"]), label)
        import torch

        torch.set_num_threads(1)
        from ..training.transfer import load_pretrained, pretrained_from_nvlabs, save_pretrained

        if validated is not None:
            p = pretrained_from_nvlabs(validated, label)
        else:
            p = load_pretrained(upload, max_bytes=int(req["max_bytes"]), label=label)
        del validated
        sha = save_pretrained(p, dest)
        result = {"ok": True, "kind": p.kind, "network": dataclasses.asdict(p.network),
                  "has_discriminator": p.D is not None, "notes": [n[:MAX_NOTE_CHARS] for n in p.notes[:MAX_NOTES]],
                  "sha256": sha, "size": dest.stat().st_size}
    except PretrainedError as exc:
        result = {"ok": False, "error": "invalid", "message": str(exc)[:MAX_MESSAGE_CHARS]}
    except MemoryError:
        result = {"ok": False, "error": "memory"}
    except RuntimeError as exc:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory"
        if "allocate" not in str(exc):
            raise
        result = {"ok": False, "error": "memory"}
    _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))

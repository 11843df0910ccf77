"""Sampling for the API: an LRU of loaded generators, keyed by checkpoint key + sha256.

Everything here blocks (storage reads, torch); routes call it through a threadpool.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from service.core.jobs import CheckpointInfo, JobRecord
from service.core.storage import ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        return "cpu"
    return name


class CheckpointUnreadable(Exception):
    """A stored checkpoint failed its checksum or does not load as a generator (409 for the API)."""


class GeneratorCache:
    def __init__(self, store: ObjectStore, size: int = 4, device: str = "cpu", threads: int = 1):
        self.store = store
        self.threads = threads
        self.size = max(1, size)
        self.device = resolve_device(device)
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str, sha256: str) -> Any:
        """The EMA generator of the checkpoint object `key`, verified against `sha256`."""
        ident = (key, sha256)
        with self._lock:
            if ident in self._items:
                self._items.move_to_end(ident)
                self.hits += 1
                return self._items[ident]
            load_lock = self._loading.setdefault(ident, threading.Lock())
        with load_lock:  # one load per checkpoint even under concurrent first requests
            with self._lock:
                if ident in self._items:
                    self.hits += 1
                    return self._items[ident]
            G = self._load(key, sha256)
            with self._lock:
                self.misses += 1
                self._items[ident] = G
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._loading.pop(ident, None)
            return G

    def for_checkpoint(self, rec: JobRecord, ckpt: CheckpointInfo) -> Any:
        """A job checkpoint's EMA generator, ready to run in this thread (sampling, interpolation, export)."""
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-wide; oversubscribed OpenMP threads are very slow
        return self.get(ckpt.object_key, ckpt.sha256)

    def _load(self, key: str, sha256: str) -> Any:
        from gan_core.sampling import generator_from_payload
        from gan_core.training.checkpoint import CheckpointError, load_checkpoint_bytes

        try:
            # Verified against the recorded sha256, then torch.load(weights_only=True): never unpickled.
            payload = load_checkpoint_bytes(self.store.get_bytes(key), expected_sha256=sha256, source=key.rsplit("/", 1)[-1])
            G, _cfg = generator_from_payload(payload, self.device)
        except CheckpointError as e:
            raise CheckpointUnreadable(str(e)) from e
        except (KeyError, ValueError, RuntimeError, TypeError) as e:  # loads, but not a generator we can build
            if isinstance(e, ObjectNotFound):
                raise
            raise CheckpointUnreadable(f"{key.rsplit('/', 1)[-1]}: {type(e).__name__}: {str(e)[:200]}") from e
        finally:
            with self._lock:
                self._loading.pop((key, sha256), None)
        return G


class BadClass(ValueError):
    """A class index the job's generator does not have (422 for the API)."""


def job_num_classes(config: dict[str, Any]) -> int | None:
    """Classes a job's generator is conditioned on: 0 = unconditional, None = conditional but not known
    from the config (num_classes 0 = "from the dataset"; the checkpoint then knows)."""
    from gan_core.config import CONDITIONAL_ARCHS

    net = config.get("network") or {}
    if (net.get("arch") or "stylegan2") not in CONDITIONAL_ARCHS:
        return 0
    return int(net.get("num_classes") or 0) or None


def check_class(rec: JobRecord, class_index: int | None) -> None:
    """Raise BadClass with what to send instead when `class_index` does not fit the job."""
    if class_index is None:
        return
    k = job_num_classes(rec.config)
    if k == 0:
        arch = (rec.config.get("network") or {}).get("arch") or "stylegan2"
        raise BadClass(f"job {rec.id} trains an unconditional {arch} model, so it takes no class_index; omit it "
                       "(class-conditional jobs use preset biggan-32 on a dataset uploaded with class_folders)")
    if k is not None and class_index >= k:
        raise BadClass(f"class_index must be in [0, {k - 1}] for job {rec.id} ({k} classes), got {class_index}")


def generate(cache: GeneratorCache, rec: JobRecord, ckpt: CheckpointInfo, seeds: list[int], psi: float,
             class_index: int | None = None) -> torch.Tensor:
    from gan_core.sampling import generate_images

    G = cache.for_checkpoint(rec, ckpt)
    try:
        return generate_images(G, seeds, psi=psi, batch_size=16, device=cache.device, class_index=class_index)
    except ValueError as e:  # only the class check raises here: the checkpoint knows its classes
        if class_index is None:
            raise
        raise BadClass(f"{e} (job {rec.id})") from None


def png_bytes(img: Any) -> bytes:
    """PIL image -> PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grid_png(images: torch.Tensor, nrow: int | None) -> bytes:
    from gan_core.sampling import make_grid

    return png_bytes(make_grid(images, nrow=nrow))


def individual_pngs(images: torch.Tensor) -> list[bytes]:
    from gan_core.sampling import to_pil_list

    return [png_bytes(im) for im in to_pil_list(images)]


def zip_pngs(pngs: list[bytes], seeds: list[int]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for png, seed in zip(pngs, seeds):
            zf.writestr(f"seed{seed:010d}.png", png)
    return buf.getvalue()

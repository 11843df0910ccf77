"""Export a trained generator (a checkpoint's G_ema) for use outside this project.

Three formats:

- **safetensors**: `model.safetensors` (the G_ema weights; the config JSON is also in its
  metadata) plus `config.json` (network and full training config, z_dim, c_dim, resolution,
  versions). Loads back into our Generator with `load_safetensors`. Written as a zip or a folder.
- **torchscript**: one `.pt` file that needs only `torch` to load and sample:

      m = torch.jit.load("generator.pt")
      z = torch.from_numpy(np.random.RandomState(seed).randn(1, m.z_dim)).float()  # our seed -> z
      img = m(z, 0.7)                      # uint8 [N, 3, R, R]; m(z, 0.7, c) with class indices c
                                           # when m.c_dim > 0 (without c, G picks each class from z)

  Noise is the stored constant noise (`noise_mode="const"`), so the same z and psi give the
  same image every time, as the service's sample endpoint does. `config.json` is embedded
  (`torch.jit.load(path, _extra_files={"config.json": ""})`).

- **onnx** (StyleGAN2 only; needs the `export` extra: onnx, onnxscript): one `.onnx` file, inputs
  `z` float32 [N, z_dim] (any N) and `psi` float32 scalar, output `images` uint8 [N, 3, R, R], constant
  noise; `config.json` is in the model's metadata_props. Runs with onnxruntime:

      sess = onnxruntime.InferenceSession("generator.onnx")
      img = sess.run(None, {"z": z.numpy(), "psi": numpy.array(0.7, numpy.float32)})[0]

  Made with torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`); the legacy TorchScript
  exporter cannot follow the FIR filter's shape. When onnxruntime is installed the export is run
  against the eager generator and refused if any pixel differs by more than one level.

The TorchScript wrapper only calls `G(z[, c], truncation_psi=..., noise_mode="const")`, so any generator with
that call signature exports (StyleGAN2, SNGAN, BigGAN); the traced module is checked against the
eager generator at a batch size and psi it was not traced with, and refused if they disagree.

W latents (projected or edited, see gan_core.latents) travel as `.npy` (`latent_npy_bytes`).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .config import TrainConfig, config_to_dict
from .sampling import generator_from_payload, to_uint8
from .versions import runtime_versions

FORMATS = ("safetensors", "torchscript", "onnx")
Format = Literal["safetensors", "torchscript", "onnx"]
EXPORT_FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# Traced at a psi other than 1 (a generator may skip truncation entirely at psi == 1) and checked
# at another batch size and psi.
_TRACE_PSI, _TRACE_BATCH = 0.5, 2
_CHECK = ((3, 1.0), (3, 0.7))


class ExportError(ValueError):
    """The generator cannot be exported in the requested format (the message says why)."""


# --------------------------------------------------------------------------- config


def num_classes(G: nn.Module) -> int:
    """Classes a generator is conditioned on (0 = unconditional), whatever the architecture calls it."""
    return int(getattr(G, "c_dim", 0) or getattr(G, "num_classes", 0) or 0)


def export_config(G: nn.Module, cfg: TrainConfig | dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON that travels with every export: enough to rebuild G and to sample it as we do."""
    train = config_to_dict(cfg) if isinstance(cfg, TrainConfig) else copy.deepcopy(cfg)
    classes = num_classes(G)
    # The network config G was built from is the truth (a trainer may fill fields in, e.g. BigGAN's
    # num_classes from the dataset); the training config carries it too, so it loads back alike.
    if dataclasses.is_dataclass(getattr(G, "cfg", None)):
        train["network"] = dataclasses.asdict(G.cfg)
    network = train.get("network", {})
    return {
        "format": "diggan-generator",
        "format_version": EXPORT_FORMAT_VERSION,
        "arch": network.get("arch") or "stylegan2",
        "generator_class": f"{type(G).__module__}.{type(G).__qualname__}",
        "z_dim": int(G.z_dim),
        "c_dim": classes,  # > 0: m(z, psi, c) takes class indices [N]
        "resolution": int(G.img_resolution),
        "img_channels": int(getattr(G, "img_channels", 3)),
        "network": network,
        "train_config": train,
        "versions": runtime_versions(),
        "source": source or {},
        "sampling": {
            "latent": "z = numpy.random.RandomState(seed).randn(z_dim), float32 (NVlabs' generate.py)",
            "truncation": "psi in [0, 1]; 1 = none",
            "noise_mode": "const",
            "output": "uint8 [N, C, R, R] = clamp(x * 127.5 + 128, 0, 255) of G's [-1, 1] output",
        },
    }


# ----------------------------------------------------------------------- safetensors


def safetensors_bytes(G: nn.Module, config: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    # clone(): safetensors refuses tensors that share storage; every tensor is written on its own.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    return save(state, metadata={"diggan_config": json.dumps(config)})


def safetensors_zip_bytes(G: nn.Module, config: dict[str, Any]) -> bytes:
    """A zip of model.safetensors + config.json (what the service's export endpoint returns)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # weights do not compress
        zf.writestr(WEIGHTS_NAME, safetensors_bytes(G, config))
        zf.writestr(CONFIG_NAME, json.dumps(config, indent=2))
    return buf.getvalue()


def save_safetensors(G: nn.Module, config: dict[str, Any], out: Path) -> Path:
    """`out` ending in .zip: one zip; otherwise a folder holding model.safetensors and config.json."""
    from .training.checkpoint import atomic_write_bytes

    out = Path(out)
    if out.suffix.lower() == ".zip":
        atomic_write_bytes(out, safetensors_zip_bytes(G, config))
    else:
        atomic_write_bytes(out / WEIGHTS_NAME, safetensors_bytes(G, config))
        atomic_write_bytes(out / CONFIG_NAME, json.dumps(config, indent=2).encode())
    return out


def _read_weights(path: Path) -> tuple[bytes, dict[str, Any]]:
    from safetensors import safe_open  # noqa: F401  (a clear ImportError if missing)

    path = Path(path)
    if path.is_dir():
        return (path / WEIGHTS_NAME).read_bytes(), json.loads((path / CONFIG_NAME).read_text())
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if WEIGHTS_NAME not in names:
                raise ExportError(f"{path}: not a safetensors export (no {WEIGHTS_NAME} inside)")
            weights = zf.read(WEIGHTS_NAME)
            config = json.loads(zf.read(CONFIG_NAME)) if CONFIG_NAME in names else None
        return weights, config if config is not None else _metadata_config(weights, path)
    weights = path.read_bytes()  # a bare .safetensors: the config is in its metadata
    return weights, _metadata_config(weights, path)


def _metadata_config(weights: bytes, path: Path) -> dict[str, Any]:
    # The header is 8 bytes of little-endian length, then JSON with __metadata__.
    n = int.from_bytes(weights[:8], "little")
    meta = json.loads(weights[8 : 8 + n]).get("__metadata__") or {}
    if "diggan_config" not in meta:
        raise ExportError(f"{path}: a safetensors file without a diggan config; pass the export's folder or zip")
    return json.loads(meta["diggan_config"])


def load_safetensors(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the generator of a safetensors export (zip, folder or bare .safetensors) with our code."""
    from safetensors.torch import load

    weights, config = _read_weights(Path(path))
    if config.get("format") != "diggan-generator":
        raise ExportError(f"{path}: config.json is not a diggan generator export")
    payload = {"config": config["train_config"], "G_ema": load(weights)}
    return generator_from_payload(payload, device)


# ----------------------------------------------------------------------- torchscript


class _Sampler(nn.Module):
    """forward(z, psi[, c]) -> uint8 images, deterministic (constant noise); psi is a 0-d tensor."""

    def __init__(self, G: nn.Module, with_c: bool):
        super().__init__()
        self.G, self.with_c = G, with_c
        params = inspect.signature(G.forward).parameters
        # fused_modconv=False: StyleGAN2's fused path passes the batch size as conv2d's `groups`, which
        # a trace freezes; the unfused path is the same maths with a free batch dimension.
        self._extra = {"fused_modconv": False} if "fused_modconv" in params else {}

    def forward(self, z: Tensor, psi: Tensor, c: Tensor | None = None) -> Tensor:
        if self.with_c:
            return to_uint8(self.G(z, c, truncation_psi=psi, noise_mode="const", **self._extra))
        return to_uint8(self.G(z, truncation_psi=psi, noise_mode="const", **self._extra))


class _Exported(nn.Module):
    """Scripted outer module of an unconditional G: psi as a float; z_dim, c_dim, img_resolution kept."""

    def __init__(self, sampler: torch.jit.ScriptModule, z_dim: int, img_resolution: int):
        super().__init__()
        self.sampler = sampler
        self.z_dim, self.c_dim, self.img_resolution = z_dim, 0, img_resolution

    def forward(self, z: Tensor, psi: float = 0.7, c: Tensor | None = None) -> Tensor:
        if c is not None:
            raise RuntimeError("this generator is unconditional: call m(z, psi) without a class")
        return self.sampler(z, torch.full([], psi, dtype=torch.float32, device=z.device))


class _ExportedConditional(nn.Module):
    """Conditional G: c = class indices [N] (or weights [N, c_dim]); None lets G pick the class as it
    does when the service samples without a class."""

    def __init__(self, sampler: torch.jit.ScriptModule, sampler_c: torch.jit.ScriptModule, z_dim: int,
                 c_dim: int, img_resolution: int):
        super().__init__()
        self.sampler, self.sampler_c = sampler, sampler_c
        self.z_dim, self.c_dim, self.img_resolution = z_dim, c_dim, img_resolution

    def forward(self, z: Tensor, psi: float = 0.7, c: Tensor | None = None) -> Tensor:
        p = torch.full([], psi, dtype=torch.float32, device=z.device)
        if c is None:
            return self.sampler(z, p)
        return self.sampler_c(z, p, c)


def _trace(wrapper: nn.Module, args: tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    with torch.no_grad():
        return torch.jit.trace(wrapper, args, check_trace=False)


def trace_generator(G: nn.Module) -> torch.jit.ScriptModule:
    """A TorchScript module of `G` (a private copy, on the CPU) that needs no project code:
    `m(z, psi=0.7, c=None)` -> uint8 images [N, C, R, R]; attributes `m.z_dim`, `m.c_dim`, `m.img_resolution`."""
    G = copy.deepcopy(G).to("cpu").eval().requires_grad_(False)
    classes = num_classes(G)
    plain, with_c = _Sampler(G, with_c=False).eval(), _Sampler(G, with_c=True).eval()

    def z_psi(n: int, psi: float, seed: int) -> tuple[Tensor, Tensor]:
        return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)), torch.tensor(float(psi))

    def labels(n: int) -> Tensor:
        return torch.arange(n) % max(classes, 1)

    with warnings.catch_warnings():
        # Shape checks on weights and feature sizes become constants in any trace; the explicit
        # check below is what tells a faithful trace from a frozen one.
        warnings.simplefilter("ignore")
        try:
            traced = _trace(plain, z_psi(_TRACE_BATCH, _TRACE_PSI, 0))
            if classes:
                traced_c = _trace(with_c, (*z_psi(_TRACE_BATCH, _TRACE_PSI, 0), labels(_TRACE_BATCH)))
                outer: nn.Module = _ExportedConditional(traced, traced_c, int(G.z_dim), classes, int(G.img_resolution))
            else:
                outer = _Exported(traced, int(G.z_dim), int(G.img_resolution))
            scripted = torch.jit.script(outer)
        except Exception as e:  # tracing raises many types for code it cannot follow
            raise ExportError(f"the generator could not be traced to TorchScript ({type(e).__name__}: {e})") from e
    with torch.no_grad():
        for seed, (n, psi) in enumerate(_CHECK, start=1):
            z, p = z_psi(n, psi, seed)
            pairs = [(scripted(z, psi), plain(z, p))]
            if classes:
                pairs.append((scripted(z, psi, labels(n)), with_c(z, p, labels(n))))
            for got, want in pairs:
                if got.shape != want.shape or (got.int() - want.int()).abs().max().item() > 1:
                    raise ExportError(
                        f"the traced generator disagrees with the original at batch {n}, psi {psi:g} (its code "
                        "branches on the batch size or on psi); it cannot be exported as TorchScript")
    return scripted


def torchscript_bytes(G: nn.Module, config: dict[str, Any]) -> bytes:
    module = trace_generator(G)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.x marks TorchScript deprecated; it still works
        torch.jit.save(module, buf, _extra_files={CONFIG_NAME: json.dumps(config, indent=2)})
    return buf.getvalue()


def save_torchscript(G: nn.Module, config: dict[str, Any], out: Path) -> Path:
    from .training.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(out), torchscript_bytes(G, config))
    return Path(out)


# ------------------------------------------------------------------------------ onnx

ONNX_OPSET = 18  # the dynamo exporter's default in torch 2.x
_ONNX_CHECK = ((3, 0.7), (1, 1.0))


class _OnnxSampler(nn.Module):
    """StyleGAN2: (z, psi) -> uint8 images with constant noise. Truncation is written out as the tensor op
    MappingNetwork applies (`w_avg.lerp(w, psi)`), because torch.export cannot branch on psi's value;
    the unfused modulated conv keeps the batch dimension free (as for TorchScript)."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z: Tensor, psi: Tensor) -> Tensor:
        ws = self.G.mapping(z)
        ws = self.G.mapping.w_avg.lerp(ws, psi)
        return to_uint8(self.G.synthesis(ws, noise_mode="const", fused_modconv=False))


def onnx_bytes(G: nn.Module, config: dict[str, Any]) -> bytes:
    """An ONNX model of a StyleGAN2 generator: (z [N, z_dim], psi []) -> uint8 [N, C, R, R]."""
    import logging

    if not (hasattr(G, "mapping") and hasattr(G, "synthesis")):
        raise ExportError(f"ONNX export supports StyleGAN2 generators; this one is {config.get('arch')!r} "
                          "(export it as torchscript or safetensors)")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the 'export' extra (pip install 'diggan-service[export]': onnx, "
                          f"onnxscript, onnxruntime); missing: {e.name}") from None
    G = copy.deepcopy(G).to("cpu").eval().requires_grad_(False)
    wrapper = _OnnxSampler(G).eval()
    z = torch.randn(_TRACE_BATCH, G.z_dim, generator=torch.Generator().manual_seed(0))
    psi = torch.tensor(_TRACE_PSI)
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)  # "torchvision is not installed" and progress lines
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (z, psi), dynamo=True, opset_version=ONNX_OPSET, input_names=["z", "psi"],
                output_names=["images"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)}, None),
                verbose=False)
    except ExportError:
        raise
    except Exception as e:  # the exporter raises many types for code it cannot follow
        raise ExportError(f"the generator could not be exported to ONNX ({type(e).__name__}: {str(e)[:500]})") from e
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONFIG_NAME, json.dumps(config)
    data = proto.SerializeToString()
    _check_onnx(data, wrapper)
    return data


def _check_onnx(data: bytes, wrapper: nn.Module) -> None:
    """Run the model with onnxruntime (when installed) against the eager generator: at most 1 level apart."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        return
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for seed, (n, psi) in enumerate(_ONNX_CHECK, start=1):
            z = torch.randn(n, wrapper.G.z_dim, generator=torch.Generator().manual_seed(seed))
            got = sess.run(None, {"z": z.numpy(), "psi": np.array(psi, dtype=np.float32)})[0]
            want = to_uint8(wrapper.G(z, truncation_psi=psi, noise_mode="const")).numpy()
            if got.shape != want.shape or np.abs(got.astype(np.int16) - want.astype(np.int16)).max() > 1:
                raise ExportError(f"the ONNX model disagrees with the generator at batch {n}, psi {psi:g}")


def save_onnx(G: nn.Module, config: dict[str, Any], out: Path) -> Path:
    from .training.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(out), onnx_bytes(G, config))
    return Path(out)


def onnx_config(path_or_bytes: Path | str | bytes) -> dict[str, Any]:
    """The config.json stored in an exported ONNX model's metadata."""
    import onnx

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    model = onnx.load_model_from_string(data)
    meta = {p.key: p.value for p in model.metadata_props}
    if CONFIG_NAME not in meta:
        raise ExportError("not a diggan ONNX export (no config.json in its metadata)")
    return json.loads(meta[CONFIG_NAME])


# ---------------------------------------------------------------------------- latents


def latent_npy_bytes(w: Tensor) -> bytes:
    """A W latent ([w_dim], [N, w_dim] or [N, num_ws, w_dim]) as a float32 .npy (batch dimension added)."""
    import numpy as np

    arr = torch.as_tensor(w).detach().float().cpu().numpy()
    buf = io.BytesIO()
    np.save(buf, arr[None] if arr.ndim == 1 else arr)
    return buf.getvalue()


# ----------------------------------------------------------------------------- entry


def export_bytes(G: nn.Module, config: dict[str, Any], fmt: str) -> bytes:
    """The export as one blob: a zip for safetensors, a .pt for torchscript, a .onnx for onnx."""
    if fmt == "safetensors":
        return safetensors_zip_bytes(G, config)
    if fmt == "torchscript":
        return torchscript_bytes(G, config)
    if fmt == "onnx":
        return onnx_bytes(G, config)
    raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export_checkpoint(ckpt_path: Path | str, fmt: str, out: Path | str) -> dict[str, Any]:
    """Export the G_ema of a checkpoint file; returns the config written with it."""
    from .training.checkpoint import load_checkpoint, sha256_hex

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt_path = Path(ckpt_path)
    payload = load_checkpoint(ckpt_path)
    G, cfg = generator_from_payload(payload, "cpu")
    source = {"checkpoint": ckpt_path.name, "sha256": sha256_hex(ckpt_path.read_bytes()),
              "kimg": payload.get("progress", {}).get("cur_nimg", 0) / 1000,
              "trained_with": payload.get("versions", {})}
    config = export_config(G, payload["config"], source)
    if fmt == "safetensors":
        save_safetensors(G, config, Path(out))
    elif fmt == "onnx":
        save_onnx(G, config, Path(out))
    else:
        save_torchscript(G, config, Path(out))
    return config

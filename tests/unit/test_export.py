"""Export round trips: a real (tiny) checkpoint exported by `python -m gan_core export`, loaded in a
clean, isolated Python process outside the repo, sampled, and compared with gan_core's own sampling
(TorchScript with torch, ONNX with onnxruntime, safetensors with our code)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gan_core.cli import main as gan_core_main
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.export import ExportError, export_bytes, export_config, load_safetensors, trace_generator
from gan_core.sampling import generate_images, load_generator
from gan_core.threads import one_thread
from gan_core.training import Trainer, load_checkpoint
from tests.unit.test_trainer import micro_config

SEEDS = [0, 1, 2, 5, 11]
PSIS = [0.7, 1.0]
PROJECT = ("gan_core", "service", "worker", "diggan", "tests")


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny nets: extra intra-op threads only spin, badly so on a busy 2-core machine."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    data = prepare_dataset(make_synthetic_dataset(root / "synth", n=8, resolution=32, seed=0), resolution=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few tiny convs: extra threads only spin on a busy machine
    try:
        result = Trainer(micro_config(kimg=0.016), data, root / "run").run()  # one real tick, one checkpoint
    finally:
        torch.set_num_threads(threads)
    return result.last_checkpoint


def run_clean(script: str, cwd: Path, *args: str) -> dict:
    """`python -I` (no PYTHONPATH, no user site, script dir not on sys.path) from a folder outside the repo."""
    path = cwd / "clean_script.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run([sys.executable, "-I", str(path), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference(ckpt: Path) -> dict[float, torch.Tensor]:
    G, _ = load_generator(ckpt)
    return {psi: generate_images(G, SEEDS, psi=psi) for psi in PSIS}


TORCHSCRIPT_USER = """
    import json, sys
    import numpy as np
    import torch

    m = torch.jit.load(sys.argv[1])
    seeds, psis = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    # The README's seed -> z mapping (NVlabs' generate.py).
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(m.z_dim) for s in seeds])).float()
    out = {str(psi): m(z, psi).tolist() for psi in psis}
    again = m(z, psis[0]).tolist()
    extra = {"config.json": ""}
    torch.jit.load(sys.argv[1], _extra_files=extra)
    project = sorted(n for n in sys.modules if n.split(".")[0] in PROJECT_PACKAGES)
    print(json.dumps({"images": out, "again": again, "config": json.loads(extra["config.json"]),
                      "project_modules": project, "c_dim": m.c_dim, "res": m.img_resolution}))
""".replace("PROJECT_PACKAGES", repr(PROJECT))


def test_torchscript_export_samples_like_gan_core_in_a_clean_process(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.pt"
    assert gan_core_main(["export", "--ckpt", str(checkpoint), "--format", "torchscript", "-o", str(out)]) == 0
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    got = run_clean(TORCHSCRIPT_USER, clean, str(out), json.dumps(SEEDS), json.dumps(PSIS))

    assert got["project_modules"] == []  # loaded and sampled with torch (and numpy for the seeds) only
    assert got["c_dim"] == 0 and got["res"] == 32
    assert got["again"] == got["images"]["0.7"]  # deterministic: constant noise
    for psi, want in reference(checkpoint).items():
        images = torch.tensor(got["images"][str(psi)], dtype=torch.uint8)
        assert images.shape == want.shape == (len(SEEDS), 3, 32, 32)
        diff = (images.int() - want.int()).abs()
        # The trace uses the unfused modulated conv (same maths): at most a rounding step apart.
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, (psi, diff.max(), (diff > 0).sum())
    cfg = got["config"]
    ckpt = load_checkpoint(checkpoint)
    assert cfg["z_dim"] == 32 and cfg["resolution"] == 32 and cfg["c_dim"] == 0
    assert cfg["train_config"] == ckpt["config"] and cfg["versions"]["torch"] == torch.__version__
    assert cfg["source"]["checkpoint"] == checkpoint.name and cfg["source"]["trained_with"]["torch"]


SAFETENSORS_USER = """
    import json, sys
    from safetensors import safe_open
    from gan_core.export import load_safetensors
    from gan_core.sampling import generate_images

    with safe_open(sys.argv[2], "pt") as f:  # the weights file alone is plain safetensors
        keys, meta = list(f.keys()), f.metadata()
    G, cfg = load_safetensors(sys.argv[1])
    seeds, psis = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    print(json.dumps({"images": {str(p): generate_images(G, seeds, psi=p).tolist() for p in psis},
                      "n_keys": len(keys), "meta_z_dim": json.loads(meta["diggan_config"])["z_dim"],
                      "resolution": cfg.network.resolution}))
"""


def test_safetensors_export_loads_back_into_our_generator(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.zip"
    assert gan_core_main(["export", "--ckpt", str(checkpoint), "--format", "safetensors", "-o", str(out)]) == 0
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["config.json", "model.safetensors"]
        zf.extract("model.safetensors", tmp_path / "x")
    weights = tmp_path / "x" / "model.safetensors"
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    got = run_clean(SAFETENSORS_USER, clean, str(out), str(weights), json.dumps(SEEDS), json.dumps(PSIS))
    G, _ = load_generator(checkpoint)
    assert got["n_keys"] == len(G.state_dict()) and got["meta_z_dim"] == 32 and got["resolution"] == 32
    for psi, want in reference(checkpoint).items():
        assert torch.equal(torch.tensor(got["images"][str(psi)], dtype=torch.uint8), want)  # same code, same bits

    # A folder export, and the bare .safetensors (its metadata carries the config), load the same weights.
    folder = tmp_path / "g"
    assert gan_core_main(["export", "--ckpt", str(checkpoint), "--format", "safetensors", "-o", str(folder)]) == 0
    assert json.loads((folder / "config.json").read_text())["train_config"] == load_checkpoint(checkpoint)["config"]
    for source in (folder, weights):
        G2, _ = load_safetensors(source)
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))


def test_export_errors_are_messages(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert gan_core_main(["export", "--ckpt", str(tmp_path / "nope.pt"), "--format", "torchscript",
                          "-o", str(tmp_path / "o.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert gan_core_main(["export", "--ckpt", str(bad), "--format", "safetensors", "-o", str(tmp_path / "o.zip")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gan_core_main(["export", "--ckpt", str(checkpoint), "--format", "pickle", "-o", str(tmp_path / "o")])
    G, cfg = load_generator(checkpoint)
    with pytest.raises(ExportError, match="unknown export format"):
        export_bytes(G, export_config(G, cfg), "pickle")
    not_export = tmp_path / "plain.zip"
    with zipfile.ZipFile(not_export, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(ExportError, match="no model.safetensors"):
        load_safetensors(not_export)


class _ToyConditional(nn.Module):
    """Any generator with the shared call signature G(z, c=None, truncation_psi=..., noise_mode=...)."""

    def __init__(self, freeze_psi: bool = False):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 8, 3, 4, 3
        self.fc = nn.Linear(8 + 3, 3 * 4 * 4)
        self.freeze_psi = freeze_psi

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="random"):
        if c is None:  # like BigGAN: a class from the latent itself
            c = (z[:, 0] > 0).long() + (z[:, 1] > 0).long()
        psi = float(truncation_psi) if self.freeze_psi else truncation_psi  # float(): a trace freezes it
        y = torch.nn.functional.one_hot(c, 3).float()
        return torch.tanh(self.fc(torch.cat([z * psi, y], 1))).view(-1, 3, 4, 4)


def test_generic_wrapper_handles_conditional_generators_and_refuses_a_frozen_trace() -> None:
    torch.manual_seed(0)
    G = _ToyConditional().eval()
    m = trace_generator(G)
    z, c = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
    assert m.c_dim == 3 and m.z_dim == 8
    as_uint8 = lambda x: (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # noqa: E731
    assert torch.equal(m(z, 0.3, c), as_uint8(G(z, c, truncation_psi=0.3)))
    assert torch.equal(m(z, 0.3), as_uint8(G(z, truncation_psi=0.3)))  # no class: G picks it, as when sampling
    with pytest.raises(ExportError, match="disagrees with the original"):
        trace_generator(_ToyConditional(freeze_psi=True).eval())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_biggan_exports_with_the_network_it_was_built_with(tmp_path: Path) -> None:
    """A conditional backbone through the same exporters; the config is taken from G itself, since the
    job record's may still say num_classes=0 (the trainer fills it in from the dataset)."""
    import io

    from gan_core.config import get_preset
    from gan_core.networks import build_generator

    cfg = get_preset("biggan-32")
    cfg.network.num_classes = 5
    torch.manual_seed(0)
    G = build_generator(cfg.network).eval()
    config = export_config(G, get_preset("biggan-32"))  # num_classes 0 in what the record holds
    assert config["arch"] == "biggan" and config["c_dim"] == 5 and config["network"]["num_classes"] == 5

    m = torch.jit.load(io.BytesIO(export_bytes(G, config, "torchscript")))
    seeds = [0, 1, 2]
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(m.z_dim) for s in seeds])).float()
    assert m.c_dim == 5
    assert torch.equal(m(z, 0.7), generate_images(G, seeds, psi=0.7))  # no class: G draws it from z
    assert torch.equal(m(z, 0.7, torch.tensor([4, 4, 4])), generate_images(G, seeds, psi=0.7, class_index=4))

    (tmp_path / "g.zip").write_bytes(export_bytes(G, config, "safetensors"))
    G2, cfg2 = load_safetensors(tmp_path / "g.zip")
    assert cfg2.network.num_classes == 5
    assert torch.equal(generate_images(G2, seeds, class_index=[0, 3, 1]), generate_images(G, seeds, class_index=[0, 3, 1]))


ONNX_USER = """
    import json, sys
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    seeds, psis = json.loads(sys.argv[2]), json.loads(sys.argv[3])
    z_dim = sess.get_inputs()[0].shape[1]
    z = np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)
    out = {str(p): sess.run(None, {"z": z, "psi": np.array(p, dtype=np.float32)})[0].tolist() for p in psis}
    one = sess.run(None, {"z": z[:1], "psi": np.array(psis[0], dtype=np.float32)})[0].tolist()
    meta = sess.get_modelmeta().custom_metadata_map
    project = sorted(n for n in sys.modules if n.split(".")[0] in PROJECT_PACKAGES or n == "torch")
    print(json.dumps({"images": out, "one": one, "config": json.loads(meta["config.json"]),
                      "inputs": [(i.name, i.type) for i in sess.get_inputs()],
                      "output": sess.get_outputs()[0].type, "modules": project}))
""".replace("PROJECT_PACKAGES", repr(PROJECT))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_samples_like_gan_core_in_onnxruntime(checkpoint: Path, tmp_path: Path) -> None:
    """ONNX beside TorchScript: exported by the CLI, run by onnxruntime alone in a clean process
    (no torch, no project code), within one uint8 level of our own samples at any batch size."""
    pytest.importorskip("onnxscript", reason="ONNX export needs the 'export' extra: pip install -e '.[export]'")
    pytest.importorskip("onnxruntime", reason="the ONNX check runs the model with onnxruntime ('export' extra)")
    out = tmp_path / "g.onnx"
    assert gan_core_main(["export", "--ckpt", str(checkpoint), "--format", "onnx", "-o", str(out)]) == 0
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    got = run_clean(ONNX_USER, clean, str(out), json.dumps(SEEDS), json.dumps(PSIS))

    assert got["modules"] == []  # onnxruntime and numpy only
    assert got["inputs"] == [["z", "tensor(float)"], ["psi", "tensor(float)"]] and got["output"] == "tensor(uint8)"
    for psi, want in reference(checkpoint).items():
        images = torch.tensor(got["images"][str(psi)], dtype=torch.uint8)
        assert images.shape == want.shape == (len(SEEDS), 3, 32, 32)
        diff = (images.int() - want.int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, (psi, diff.max(), (diff > 0).sum())
    assert torch.equal(torch.tensor(got["one"], dtype=torch.uint8)[0],
                       torch.tensor(got["images"][str(PSIS[0])], dtype=torch.uint8)[0])  # batch of one, same image
    cfg = got["config"]
    assert cfg["z_dim"] == 32 and cfg["resolution"] == 32 and cfg["train_config"] == load_checkpoint(checkpoint)["config"]


def test_onnx_refuses_other_architectures_with_a_message() -> None:
    from gan_core.config import get_preset
    from gan_core.networks import build_generator

    cfg = get_preset("sngan-32")
    G = build_generator(cfg.network).eval()
    with pytest.raises(ExportError, match="ONNX export supports StyleGAN2"):
        export_bytes(G, export_config(G, cfg), "onnx")


def test_latents_travel_as_npy(tmp_path: Path) -> None:
    from gan_core.export import latent_npy_bytes

    w = torch.randn(8)
    (tmp_path / "w.npy").write_bytes(latent_npy_bytes(w))
    assert np.array_equal(np.load(tmp_path / "w.npy"), w.numpy()[None])
    wplus = torch.randn(1, 6, 8)
    (tmp_path / "wp.npy").write_bytes(latent_npy_bytes(wplus))
    assert np.load(tmp_path / "wp.npy").shape == (1, 6, 8)

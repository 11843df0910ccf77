"""gan_core.interop.nvlabs on a pkl written by NVlabs' own code (tests/fixtures/nvlabs): our networks
reproduce NVlabs' outputs, nothing in the pkl is executed, and tampered or broken files are refused."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from gan_core.interop.nvlabs import (
    NVlabsImportError,
    load_nvlabs_pkl,
    load_tensors,
    network_config_from_kwargs,
    read_nvlabs_pickle,
    to_tensor,
)
from gan_core.networks import Generator

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "nvlabs"
PKL = FIXTURE / "tiny.pkl"

# Runs in a fresh interpreter where NVlabs' packages cannot be imported and every call of
# exec/eval/compile is recorded while the pkl loads.
_ISOLATED = r"""
import builtins, json, sys
NVLABS = ("dnnlib", "torch_utils", "training", "legacy")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in NVLABS:
            raise ImportError(f"NVlabs module {name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import io
import numpy as np, torch
from gan_core.interop.nvlabs import load_nvlabs_pkl
from gan_core.sampling import seed_latents

# torch imports parts of itself lazily on its first (weights-only) load; do that first, so any
# exec/compile seen below could only come from the pkl.
buf = io.BytesIO()
torch.save(torch.zeros(1), buf, _use_new_zipfile_serialization=False)
torch.load(io.BytesIO(buf.getvalue()), weights_only=True)

calls = []
real = {n: getattr(builtins, n) for n in ("exec", "eval", "compile")}
def trap(n):
    def f(*a, **k):
        calls.append(n)
        return real[n](*a, **k)
    return f
for n in real:
    setattr(builtins, n, trap(n))
try:
    nets = load_nvlabs_pkl(sys.argv[1])
finally:
    for n, f in real.items():
        setattr(builtins, n, f)

ref = np.load(sys.argv[2])
out = {"calls": calls, "config": vars(nets.config), "notes": nets.notes,
       "nvlabs_modules": [m for m in sys.modules if m.split(".")[0] in NVLABS or m.startswith("_imported_module_")]}
with torch.no_grad():
    for key, G in (("G_ema", nets.G_ema), ("G", nets.G)):
        for i, psi in enumerate(ref["psis"].tolist()):
            img = G(seed_latents(ref["seeds"].tolist(), G.z_dim), truncation_psi=psi, noise_mode="const")
            out[f"{key}_psi{psi}"] = float(np.abs(img.numpy() - ref["images_" + key][i]).max())
    out["D"] = float(np.abs(nets.D(torch.from_numpy(ref["d_input"])).numpy() - ref["d_logits"]).max())
    out["image_scale"] = float(np.abs(ref["images_G_ema"]).max())
print("RESULT " + json.dumps(out))
"""


def test_fixture_reproduces_nvlabs_outputs_without_nvlabs_code():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, str(PKL), str(FIXTURE / "reference.npz")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert res["calls"] == [], "exec/eval/compile ran while loading the pkl"
    assert res["nvlabs_modules"] == []
    cfg = res["config"]
    assert (cfg["resolution"], cfg["z_dim"], cfg["w_dim"], cfg["mapping_layers"]) == (32, 32, 32, 2)
    assert (cfg["channel_base"], cfg["channel_max"], cfg["conv_clamp"]) == (512, 16, 256.0)
    assert (cfg["mbstd_group_size"], cfg["mbstd_num_channels"], cfg["mapping_lr_mult"]) == (4, 1, 0.01)
    assert any("mixed precision" in n for n in res["notes"])
    assert res["image_scale"] > 1.0  # the references are not trivially near zero
    for key in ("G_ema_psi1.0", "G_ema_psi0.7", "G_psi1.0", "G_psi0.7", "D"):
        assert res[key] < 1e-4, (key, res[key])


def test_g_and_g_ema_are_kept_apart():
    nets = load_nvlabs_pkl(PKL)
    assert nets.G is not None and nets.D is not None
    diff = max((a - b).abs().max().item() for a, b in zip(nets.G.state_dict().values(), nets.G_ema.state_dict().values()))
    assert diff > 1e-3
    assert nets.training_set_kwargs["resolution"] == 32


# --------------------------------------------------------------------------- malicious files


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reduce_to_os_system_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"G_ema": _System(marker), "D": None})
    with pytest.raises(NVlabsImportError, match=r"refusing to load (posix|os|nt)\.system"):
        load_nvlabs_pkl(data)
    assert not marker.exists()
    # Control: the same bytes through plain pickle do run the command, so the marker would have shown it.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_System(control)))
    assert control.exists()


def test_eval_and_unlisted_classes_are_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Eval:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    with pytest.raises(NVlabsImportError, match=r"builtins\.eval"):
        read_nvlabs_pickle(pickle.dumps([Eval()]))
    assert not marker.exists()
    import collections

    with pytest.raises(NVlabsImportError, match=r"collections\.Counter"):
        read_nvlabs_pickle(pickle.dumps({"G_ema": collections.Counter("abc")}))


def test_embedded_source_is_never_executed(tmp_path, monkeypatch):
    """A persistent object whose module source would write a file: we read it as data only."""
    marker = tmp_path / "pwned"
    # Register a stand-in torch_utils.persistence only while pickling, so pickle can name it.
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called: the loader maps the name to its own function
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", pkg)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", mod)

    class Persistent:
        def __reduce__(self):
            meta = dict(type="class", version=6, class_name="Generator",
                        module_src=f"open({str(marker)!r}, 'w').write('pwned')\nclass Generator: pass\n",
                        state={"_init_kwargs": {"z_dim": 8}})
            return (_reconstruct_persistent_obj, (meta,))

    data = pickle.dumps({"G_ema": Persistent()})
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")
    monkeypatch.delitem(sys.modules, "torch_utils")

    plain = read_nvlabs_pickle(data)
    obj = plain["G_ema"]
    assert obj.class_name == "Generator" and obj.source_bytes > 0 and obj.init_kwargs == {"z_dim": 8}
    with pytest.raises(NVlabsImportError, match=r"G\.w_dim is missing"):
        load_nvlabs_pkl(data)
    assert not marker.exists()
    assert "torch_utils" not in sys.modules


def test_storage_blob_is_decoded_without_unpickling_code(tmp_path):
    """A storage blob is a legacy torch.save of one storage; ours decodes it with a four-name allow-list."""
    marker = tmp_path / "pwned"

    def storage_of(blob):
        class Storage:
            def __reduce__(self):
                return (torch.storage._load_from_bytes, (blob,))

        return pickle.dumps({"G_ema": Storage()})

    for protocol in (2, 4):  # the legacy format is protocol 2: both the wrong framing and a protocol-2 REDUCE fail
        with pytest.raises(NVlabsImportError, match="tensor storage blob"):
            read_nvlabs_pickle(storage_of(pickle.dumps(_System(marker), protocol=protocol)))
    assert not marker.exists()
    # A genuine blob decodes to the same values, as a view of the file's bytes.
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    back = to_tensor(read_nvlabs_pickle(pickle.dumps({"t": t}))["t"])
    assert back.dtype == torch.float32 and torch.equal(back, t)


# --------------------------------------------------------------------------- broken files


def test_truncated_garbage_zip_oversized_and_trailing_data_are_refused(tmp_path):
    data = PKL.read_bytes()
    with pytest.raises(NVlabsImportError, match="truncated or damaged"):
        load_nvlabs_pkl(data[: len(data) // 2])
    with pytest.raises(NVlabsImportError, match="not a pickle"):
        load_nvlabs_pkl(b"GIF89a this is not a network")
    with pytest.raises(NVlabsImportError, match="not a pickle"):
        load_nvlabs_pkl(b"")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"x")
    with pytest.raises(NVlabsImportError, match="zip archive"):
        load_nvlabs_pkl(buf.getvalue())
    with pytest.raises(NVlabsImportError, match="over the 1,000-byte limit"):
        load_nvlabs_pkl(PKL, max_bytes=1000)
    with pytest.raises(NVlabsImportError, match="data after the end"):
        load_nvlabs_pkl(data + b"junk")
    with pytest.raises(NVlabsImportError, match="no 'G_ema' network"):
        load_nvlabs_pkl(pickle.dumps({"G": None}))
    with pytest.raises(NVlabsImportError, match="no such file"):
        load_nvlabs_pkl(tmp_path / "missing.pkl")


# --------------------------------------------------------------------------- unsupported networks


def test_unsupported_settings_are_listed_together():
    plain = read_nvlabs_pickle(PKL)
    g = copy.deepcopy(plain["G_ema"].init_kwargs)
    d = copy.deepcopy(plain["D"].init_kwargs)
    cfg, _ = network_config_from_kwargs(g, d)
    assert cfg.resolution == 32
    g["c_dim"] = 10
    g["synthesis_kwargs"]["architecture"] = "orig"
    g["mapping_kwargs"]["shiny"] = True
    d["architecture"] = "skip"
    d["channel_base"] = 1024
    with pytest.raises(NVlabsImportError) as err:
        network_config_from_kwargs(g, d)
    msg = str(err.value)
    for needle in ("G.c_dim=10", "unconditional", "G.synthesis_kwargs.architecture='orig'",
                   "G.mapping_kwargs.shiny=True", "D.architecture='skip'", "D.channel_base=1024"):
        assert needle in msg, (needle, msg)


def test_tensor_names_and_shapes_must_match():
    plain = read_nvlabs_pickle(PKL)
    cfg, _ = network_config_from_kwargs(plain["G_ema"].init_kwargs)
    tensors = plain["G_ema"].tensors()
    assert set(tensors) == set(Generator(cfg).state_dict())  # NVlabs' names are ours
    del tensors["mapping.fc1.weight"]
    tensors["synthesis.b8.conv0.weight"] = torch.zeros(3, 3, 3, 3)
    tensors["synthesis.b8.extra"] = torch.zeros(1)
    with pytest.raises(NVlabsImportError) as err:
        load_tensors(Generator(cfg), tensors, "G_ema")
    msg = str(err.value)
    assert "missing: mapping.fc1.weight" in msg and "unexpected: synthesis.b8.extra" in msg
    assert "wrong shape: synthesis.b8.conv0.weight (3, 3, 3, 3)" in msg

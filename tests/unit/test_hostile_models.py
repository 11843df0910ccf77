"""gan_core.interop.sandbox.convert_model_upload on the hostile-model table (tests/hostile_models.py)
and on legitimate files: every hostile file is refused with a PretrainedError that says why, in a
child process whose memory is not the parent's; the NVlabs fixture and a checkpoint from a real
(tiny) training run still convert, bit for bit. Timings are printed (pytest -s) and recorded as
junit properties; bench/hostile_models.py writes them as JSON."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gan_core.config import get_preset
from gan_core.data import make_synthetic_dataset, prepare_dataset
from gan_core.interop.errors import PretrainedError
from gan_core.interop.sandbox import (
    RESULT_PREFIX,
    ModelUploadLimits,
    _child_env,
    _parse_output,
    _verify,
    convert_model_upload,
)
from gan_core.training import Trainer
from gan_core.training.transfer import load_pretrained
from tests.hostile_models import BUILDERS, FIXTURE_PKL

REPO = Path(__file__).resolve().parents[2]
LIMITS = ModelUploadLimits()  # the defaults the service gets
ISSUE = ("stride0-expansion", "reference-bomb", "huge-network", "pt-deflate-bomb")  # the issue's four bombs


@pytest.mark.parametrize("name", list(BUILDERS))
def test_hostile_model_is_refused(name, tmp_path, record_property, capsys):
    h = BUILDERS[name]()
    upload = tmp_path / f"upload{h.suffix}"
    upload.write_bytes(h.data)
    dest = tmp_path / "out" / "model.pt"
    start = time.monotonic()
    with pytest.raises(PretrainedError) as err:
        convert_model_upload(upload, dest, LIMITS, label=f"model{h.suffix}")
    seconds = time.monotonic() - start
    record_property("seconds", round(seconds, 3))
    with capsys.disabled():
        print(f"\n  {name}: {len(h.data):,} bytes refused in {seconds:.2f} s: {str(err.value)[:100]!r}")
    assert re.search(h.expect, str(err.value), re.DOTALL), str(err.value)
    assert str(upload.parent) not in str(err.value)  # messages name the label, not server paths
    assert not dest.exists() and not Path(f"{dest}.sha256").exists()


_DRIVER = r"""
import json, resource, sys, tempfile, time

def hwm_kib():  # this process image's peak RSS (ru_maxrss would include the parent's from before exec)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])

from pathlib import Path
from tests.hostile_models import BUILDERS
from gan_core.interop.errors import PretrainedError
from gan_core.interop.sandbox import convert_model_upload
tmp = Path(tempfile.mkdtemp())
out = {"before_kib": hwm_kib(), "refused": {}}
for name in sys.argv[1:]:
    h = BUILDERS[name]()
    up = tmp / ("upload" + h.suffix)
    up.write_bytes(h.data)
    t = time.monotonic()
    try:
        convert_model_upload(up, tmp / "out.pt")
    except PretrainedError:
        out["refused"][name] = round(time.monotonic() - t, 3)
out["after_kib"] = hwm_kib()
out["children_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
out["torch_imported"] = "torch" in sys.modules
print("RESULT " + json.dumps(out))
"""


def test_parent_memory_stays_bounded_and_torch_free():
    """The issue's bombs, from a fresh parent process: it never imports torch, and its peak RSS stays
    near an interpreter's while the children did the parsing (the bombs cost GiBs in-process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _DRIVER, *ISSUE], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(f"\n  parent peak RSS {res['before_kib'] // 1024} -> {res['after_kib'] // 1024} MiB; "
          f"largest child {res['children_kib'] // 1024} MiB; seconds {res['refused']}")
    assert sorted(res["refused"]) == sorted(ISSUE)
    assert not res["torch_imported"]
    assert res["after_kib"] - res["before_kib"] < 100 * 1024, res  # the deflate bomb alone inflates to 256 MiB
    assert res["after_kib"] < 250 * 1024, res  # an interpreter plus the files' bytes; torch alone is ~300 MiB
    assert res["children_kib"] > res["after_kib"], res  # the parsing happened over there


# --------------------------------------------------------------------------- legitimate files


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def converted_fixture(tmp_path_factory):
    dest = tmp_path_factory.mktemp("converted") / "model.pt"
    return convert_model_upload(FIXTURE_PKL, dest, LIMITS, label="ffhq.pkl"), dest


def test_fixture_pkl_converts_bit_for_bit(converted_fixture):
    got, dest = converted_fixture
    assert (got.kind, got.resolution, got.has_discriminator) == ("nvlabs-pkl", 32, True)
    assert got.network["channel_max"] == 16 and any("mixed precision" in n for n in got.notes)
    assert got.size == dest.stat().st_size and Path(f"{dest}.sha256").read_text().strip() == got.sha256
    print(f"\n  tiny.pkl converted in {got.seconds:.2f} s")
    ours, theirs = load_pretrained(dest), load_pretrained(FIXTURE_PKL)
    assert ours.source == "ffhq.pkl" and ours.kind == "nvlabs-pkl"
    for a, b in ((ours.G, theirs.G), (ours.G_ema, theirs.G_ema), (ours.D, theirs.D)):
        assert _equal(a, b)


def test_checkpoint_from_a_training_run_converts(tmp_path):
    torch.set_num_threads(1)
    cfg = get_preset("cpu-tiny")
    cfg.network.resolution, cfg.batch_size, cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 32, 4, 0.004, 0.004, 1, 4
    cfg.regularizers = []
    images = make_synthetic_dataset(tmp_path / "images", n=8, resolution=32, seed=0)
    result = Trainer(cfg, prepare_dataset(images), tmp_path / "run", device="cpu").run()
    src = result.last_checkpoint
    got = convert_model_upload(src, tmp_path / "model.pt", LIMITS, label="best.pt")
    assert (got.kind, got.resolution, got.has_discriminator) == ("checkpoint", 32, True)
    assert got.network["channel_base"] == cfg.network.channel_base
    ours, theirs = load_pretrained(tmp_path / "model.pt"), load_pretrained(src)
    for a, b in ((ours.G, theirs.G), (ours.G_ema, theirs.G_ema), (ours.D, theirs.D)):
        assert _equal(a, b)


# --------------------------------------------------------------------------- the process limits


def test_memory_limit_is_reported_as_such(tmp_path):
    """A 2048x2048 generator at every cap needs ~1 GiB of reference networks: over a 512 MiB limit."""
    h = BUILDERS["caps-max-network"]()
    upload = tmp_path / "caps.pkl"
    upload.write_bytes(h.data)
    small = ModelUploadLimits(memory_bytes=512 << 20)
    with pytest.raises(PretrainedError, match="exceeded the memory limit of 512 MiB"):
        convert_model_upload(upload, tmp_path / "out.pt", small)
    # Under the default limit the same file gets its real verdict (test_hostile_model_is_refused[caps-max-network]).


def _converters_writing(dest: Path) -> list[int]:
    """PIDs of converter processes whose request names `dest` (from /proc/*/cmdline)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"gan_core.interop.sandbox" in cmd and str(dest.resolve()).encode() in cmd:
            pids.append(int(proc.name))
    return pids


def test_wall_clock_timeout_kills_the_child(tmp_path):
    dest = tmp_path / "out.pt"
    with pytest.raises(PretrainedError, match=r"took longer than 0\.2 s"):
        convert_model_upload(FIXTURE_PKL, dest, ModelUploadLimits(wall_seconds=0.2))
    assert _converters_writing(dest) == []  # killed and reaped, not left running
    assert not dest.exists()


def test_cpu_limit_and_crashes_are_named():
    for code, needle in ((-signal.SIGXCPU, "more than 120 s of CPU time"), (-signal.SIGKILL, "of CPU time"),
                         (-signal.SIGXFSZ, "larger than 2048 MiB"),
                         (-signal.SIGSEGV, "converter stopped (signal SIGSEGV)"), (1, "exit status 1")):
        with pytest.raises(PretrainedError, match=re.escape(needle)):
            _parse_output(b"", code, LIMITS, "m.pkl", tail="")
    with pytest.raises(PretrainedError, match="exceeded the memory limit of 4096 MiB"):
        _parse_output(b"", 1, LIMITS, "m.pkl", tail="Traceback ...\nMemoryError\n")


def test_child_result_is_validated_not_trusted(converted_fixture):
    good, dest = converted_fixture
    ok = {"ok": True, "kind": good.kind, "network": good.network, "has_discriminator": True, "notes": good.notes,
          "sha256": good.sha256, "size": good.size}
    assert _verify(dict(ok), dest, LIMITS, "m", 0.0).sha256 == good.sha256
    bad = [({"sha256": "0" * 64}, "checksum"), ({"size": good.size + 1}, "unexpected size"),
           ({"kind": "exec"}, "kind"), ({"network": {**good.network, "resolution": 1 << 20}}, "network"),
           ({"network": {**good.network, "evil": 1}}, "network"), ({"notes": ["x" * 10_000]}, "notes"),
           ({"has_discriminator": "yes"}, "has_discriminator"), ({"extra": 1}, "fields")]
    for change, needle in bad:
        with pytest.raises(PretrainedError, match=needle):
            _verify({**ok, **change}, dest, LIMITS, "m", 0.0)
    line = (RESULT_PREFIX + json.dumps({"ok": False, "error": "invalid", "message": "m.pkl: nope"})).encode()
    with pytest.raises(PretrainedError, match="^m.pkl: nope$"):
        _parse_output(line, 0, LIMITS, "m.pkl", tail="")
    with pytest.raises(PretrainedError, match="malformed"):
        _parse_output((RESULT_PREFIX + "[1]").encode(), 0, LIMITS, "m.pkl", tail="")


def test_child_environment_holds_no_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGGAN_SECRET_KEY", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    env = _child_env(tmp_path)
    assert "hunter2" not in json.dumps(env)
    assert env["OMP_NUM_THREADS"] == "1" and env["HOME"] == str(tmp_path)

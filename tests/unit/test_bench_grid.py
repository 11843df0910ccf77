"""bench/grid.py: a re-run skips finished runs, continues an interrupted one from its checkpoint
(ending bit-for-bit where an uninterrupted run ends), refuses a changed config, and scores once."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import grid  # noqa: E402
from grid import Grid, GridConfigMismatch, RunSpec, run_grid  # noqa: E402

from gan_core.config import RegularizerConfig, get_preset  # noqa: E402
from gan_core.data import make_synthetic_dataset, prepare_dataset  # noqa: E402
from gan_core.training import Trainer, TrainingCallbacks, load_checkpoint  # noqa: E402


def micro(kimg: float = 0.032, seed: int = 0):
    """A 32x32 StyleGAN2 of a few steps (8 minibatches of 4, a checkpoint every 2 ticks of 2)."""
    cfg = get_preset("cpu-tiny")
    cfg.network.resolution = 32
    cfg.network.channel_base, cfg.network.channel_max = 256, 8
    cfg.network.z_dim = cfg.network.w_dim = 16
    cfg.batch_size, cfg.kimg, cfg.tick_kimg, cfg.snapshot_ticks, cfg.num_grid = 4, kimg, 0.008, 2, 4
    cfg.augment.kind, cfg.augment.ada_kimg = "ada", 1.0
    cfg.regularizers = [RegularizerConfig("diggan", 100.0, 2, {"alpha": 0.5}), RegularizerConfig("r1", 1.0, 4)]
    cfg.seed = seed
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), n=8, resolution=32, seed=0)


def specs(data: Path, kimg: float = 0.032) -> list[RunSpec]:
    return [RunSpec("synth", arm, 0, micro(kimg), data) for arm in ("a", "b+x")]


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory) -> Path:
    """Both arms trained once; each test works on its own copy."""
    out = tmp_path_factory.mktemp("trained")
    records = run_grid(Grid(specs(data), out), phases=("train",))
    assert [r["status"] for r in records] == ["trained", "trained"]
    assert [r["arm"] for r in records] == ["a", "b+x"] and records[0]["kimg"] == pytest.approx(0.032)
    return out


def copy_of(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "out", symlinks=True)
    return tmp_path / "out"


def snapshot_of(run_dir: Path) -> dict[str, float]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}


def test_rerun_skips_finished_runs(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    g = Grid(specs(data), out)
    before = {s.name: snapshot_of(s.run_dir(out)) for s in g.runs}
    again = run_grid(g, phases=("train",))
    assert {s.name: snapshot_of(s.run_dir(out)) for s in g.runs} == before  # nothing written
    assert [r["status"] for r in again] == ["trained", "trained"]
    assert [len(r["curves"]["kimg"]) for r in again] == [4, 4]


def test_interrupted_run_continues_from_its_checkpoint_exactly(data: Path, trained: Path, tmp_path: Path) -> None:
    spec = specs(data)[0]
    ref = load_checkpoint(spec.run_dir(trained) / "checkpoints" / "latest.pt")  # never interrupted

    # Interrupted: stopped after its first checkpoint (tick 2, 0.016 kimg) and one more tick, which the
    # stop turns into a checkpoint at tick 3; then the tick-4 log line and a torn line a kill would leave.
    out = tmp_path / "cut"
    run_dir = spec.run_dir(out)
    grid.check_config(run_dir, spec.cfg)

    class StopAfter3(TrainingCallbacks):
        def should_stop(self) -> bool:
            return json.loads((run_dir / "stats.jsonl").read_text().splitlines()[-1])["tick"] >= 3

    ds = prepare_dataset(data, resolution=32)
    Trainer(spec.cfg, ds, run_dir, callbacks=StopAfter3()).run()
    newest = grid.checkpoints_newest_first(run_dir)
    assert [k for k, _ in newest] == [0.024, 0.016]
    with open(run_dir / "stats.jsonl", "a") as f:
        f.write(json.dumps({"tick": 4, "kimg": 0.032}) + "\n" + '{"tick": 5, "kim')
    # The newest checkpoint was torn by the kill: its checksum no longer matches.
    newest[0][1].write_bytes(newest[0][1].read_bytes()[:-7])
    assert grid.status(run_dir) == "partial"

    run_grid(Grid([spec], out), phases=("train",))
    trained = json.loads((run_dir / "trained.json").read_text())
    assert trained["resumed_from_kimg"] == 0.016  # fell back past the torn checkpoint
    got = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    for net in ("G", "D", "G_ema"):
        for k, v in ref[net].items():
            assert torch.equal(v, got[net][k]), f"{net}.{k} differs from the uninterrupted run"
    ticks = [json.loads(line)["tick"] for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert ticks == [1, 2, 3, 4]  # the stale and torn lines are gone, none is doubled


def test_a_changed_config_is_refused(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    spec = specs(data)[0]
    spec.cfg.d_lr *= 2
    with pytest.raises(GridConfigMismatch, match="d_lr"):
        run_grid(Grid([spec], out), phases=("train",))
    shorter = specs(data, kimg=0.016)[0]  # shorter is another protocol too, not a partial run
    with pytest.raises(GridConfigMismatch, match="kimg"):
        run_grid(Grid([shorter], out), phases=("train",))


@pytest.mark.slow  # Inception on the CPU
def test_score_once_per_sample_size(data: Path, trained: Path, tmp_path: Path) -> None:
    spec = specs(data)[0]
    tmp_path = copy_of(trained, tmp_path)
    g = Grid([spec], tmp_path, final_num_gen=4, final_metrics=("kid",))
    [rec] = run_grid(g)
    final = json.loads((spec.run_dir(tmp_path) / "final.json").read_text())
    assert rec["status"] == "scored" and final["num_gen"] == 4 and final["kimg"] == 0.032
    assert rec["final_kid"] == final["kid"]
    mtime = (spec.run_dir(tmp_path) / "final.json").stat().st_mtime_ns
    run_grid(g)
    assert (spec.run_dir(tmp_path) / "final.json").stat().st_mtime_ns == mtime  # not scored again
    shutil.rmtree(spec.run_dir(tmp_path) / "grids")  # scoring needs only the checkpoint
    [rec] = run_grid(Grid([spec], tmp_path, final_num_gen=6, final_metrics=("kid",)))
    assert rec["final_num_gen"] == 6


def test_a_longer_kimg_continues_the_finished_run(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    spec = specs(data, kimg=0.048)[0]
    run_grid(Grid([spec], out), phases=("train",))
    run_dir = spec.run_dir(out)
    assert json.loads((run_dir / "trained.json").read_text())["resumed_from_kimg"] == 0.032
    assert (run_dir / "trained-kimg0.032.json").exists()
    assert json.loads((run_dir / "config.json").read_text())["kimg"] == 0.048
    ticks = [json.loads(line)["kimg"] for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert ticks == pytest.approx([0.008, 0.016, 0.024, 0.032, 0.04, 0.048])


def test_a_process_works_only_on_its_share_and_reports_all(data: Path, trained: Path, tmp_path: Path) -> None:
    out = copy_of(trained, tmp_path)
    more = specs(data) + [RunSpec("synth", arm, 1, micro(seed=1), data) for arm in ("a", "b+x")]
    seen = []
    records = run_grid(Grid(more, out, work=lambda s: s.seed == 1 and s.arm == "a"), report=seen.append,
                       phases=("train",))
    assert [(r["arm"], r["seed"], r["status"]) for r in records] == [
        ("a", 0, "trained"), ("b+x", 0, "trained"), ("a", 1, "trained"), ("b+x", 1, "new")]
    assert len(seen[-1]) == 4  # the report covers the runs other processes own


def test_a_scored_run_is_kept_for_git_and_stands_in_on_a_new_machine(data: Path, trained: Path,
                                                                     tmp_path: Path) -> None:
    spec = specs(data)[0]
    out, records = copy_of(trained, tmp_path), tmp_path / "records"
    [scored] = run_grid(Grid([spec], out, final_num_gen=4, final_metrics=("kid",), records_dir=records))
    path = grid.record_path(records, spec)
    kept = json.loads(path.read_text())
    assert kept["final_kid"] == scored["final_kid"] and kept["curves"] == scored["curves"]
    assert kept["config"]["seed"] == 0 and "run_dir" not in kept
    trained_json = json.loads((spec.run_dir(out) / "trained.json").read_text())
    assert kept["commit"] == trained_json["commit"] and "kept_at_commit" in kept  # the code that trained it
    # ... and the machine: the same code and seed on another CPU is not the same run (gan_core/versions.py)
    assert kept["runtime"] == trained_json["runtime"]
    assert kept["runtime"]["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert kept["runtime"]["torch"] == torch.__version__

    # A sitting on a new machine: no run folders, the same records. Nothing is trained or scored again.
    fresh = tmp_path / "fresh"
    [again] = run_grid(Grid([spec], fresh, final_num_gen=4, final_metrics=("kid",), records_dir=records))
    assert not spec.run_dir(fresh).exists()
    assert again["status"] == "scored" and again["final_kid"] == scored["final_kid"]
    assert again["kept_record"] == str(path) and again["curves"] == scored["curves"]


def test_a_kept_record_of_another_config_is_not_used(data: Path, trained: Path, tmp_path: Path) -> None:
    spec = specs(data)[0]
    records = tmp_path / "records"
    run_grid(Grid([spec], copy_of(trained, tmp_path), final_num_gen=4, final_metrics=("kid",), records_dir=records))
    changed = RunSpec(spec.group, spec.arm, spec.seed, micro(), data)
    changed.cfg.regularizers[1].weight = 2.0  # R1 gamma: another protocol under the same run name
    g = Grid([changed], tmp_path / "fresh", records_dir=records)
    assert g.kept(spec) is not None and g.kept(changed) is None

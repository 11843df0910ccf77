"""bench/quality.py and bench/compare.py: the arms, pairs and run order they promise, the DigGAN weight
each backbone gets, the paired differences the report prints, and the --dry-run of the GPU protocol."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import compare  # noqa: E402
import quality  # noqa: E402
from harness import DATASETS_DIR, build_specs  # noqa: E402
from report import group_markdown, paired, plot_group, window_means, windows_markdown  # noqa: E402

from gan_core.config import get_preset  # noqa: E402


def configured(base, arm: str):
    cfg = copy.deepcopy(base)
    quality.make_arm(arm, base).configure(cfg)
    return cfg


def test_quality_arms_add_diggan_and_lecam_on_top_of_r1() -> None:
    base = quality.cpu_overfit_32()
    plain = configured(base, "none")
    assert plain.augment.kind == "none" and [r.name for r in plain.regularizers] == ["r1"]
    both = configured(base, "diffaugment+diggan+lecam")
    assert both.augment.kind == "diffaugment"
    assert [(r.name, r.weight, r.interval) for r in both.regularizers] == [
        ("r1", pytest.approx(0.0128), 16), ("diggan", 100.0, 8), ("lecam", 0.3, 1)]
    assert both.regularizer("lecam").params == {"decay": 0.99}
    # the paper-gpu baseline drops the preset's own DigGAN; its DigGAN arm keeps the preset's
    gpu = quality.paper_gpu()
    assert [r.name for r in configured(gpu, "ada").regularizers] == ["r1"]
    assert configured(gpu, "ada+diggan").regularizer("diggan") == gpu.regularizer("diggan")
    with pytest.raises(SystemExit, match="unknown regularizer"):
        quality.make_arm("ada+r3", base)


def test_an_arm_can_name_a_regularizer_weight() -> None:
    base = quality.cpu_overfit_32()
    light = configured(base, "none+diggan+lecam:0.03")
    assert [(r.name, r.weight, r.interval) for r in light.regularizers] == [
        ("r1", pytest.approx(0.0128), 16), ("diggan", 100.0, 8), ("lecam", 0.03, 1)]
    assert light.regularizer("lecam").params == {"decay": 0.99}  # only the weight changes
    assert configured(base, "diffaugment+diggan:10").regularizer("diggan").weight == 10.0
    assert configured(base, "none+diggan+lecam").regularizer("lecam").weight == 0.3  # the default is untouched
    for bad, msg in (("none+lecam:x", "not a number"), ("none+lecam:0", "must be positive"),
                     ("none+lecam:-1", "must be positive")):
        with pytest.raises(SystemExit, match=msg):
            quality.make_arm(bad, base)


def test_pairs_and_priority() -> None:
    arms = quality.PROTOCOLS["cpu-overfit-32"].arms
    assert ("ada+diggan", "ada") in quality.pairs_for(arms)
    assert ("none+diggan+lecam", "none") in quality.pairs_for(arms)
    assert len(quality.pairs_for(arms)) == 6
    base = quality.cpu_overfit_32()
    by_ds = [build_specs(base, [quality.make_arm(a, base) for a in arms], [0, 1], g, Path(g)) for g in ("o", "g")]
    order = [(s.group, s.seed, s.arm) for s in quality.prioritise(by_ds)]
    assert order[:4] == [("o", 0, a) for a in ("none", "none+diggan", "ada", "ada+diggan")]
    assert order[4][:2] == ("o", 1) and order[8][:2] == ("g", 0)
    assert {a for _, _, a in order[16:24]} == {"diffaugment", "diffaugment+diggan"}
    assert all("lecam" in a for _, _, a in order[24:]) and len(order) == 36


@pytest.mark.parametrize("preset, d_steps", [("sngan-32", 5), ("biggan-32", 4)])
def test_compare_diggan_is_the_presets_lambda_per_application(preset: str, d_steps: int) -> None:
    base = get_preset(preset)
    cfg = copy.deepcopy(base)
    compare.make_arm("none", "diggan", base).configure(cfg)
    dig = cfg.regularizer("diggan")
    assert dig == base.regularizer("diggan")  # not the registry's lambda 100 every 8
    assert (dig.weight, dig.interval, dig.scale_by_interval) == (10000.0, d_steps, False)  # the authors', per G step
    lecam = configured_compare(base, "lecam").regularizer("lecam")
    assert (lecam.weight, lecam.params["decay"]) == (0.3, 0.9)  # lecam-gan BigGAN-CIFAR


def configured_compare(base, regs: str):
    cfg = copy.deepcopy(base)
    compare.make_arm("none", regs, base).configure(cfg)
    return cfg


def test_paired_differences_and_table() -> None:
    recs = []
    for seed, (a, b) in enumerate([(0.30, 0.20), (0.25, 0.27), (0.40, 0.31)]):
        for arm, kid in (("ada", a), ("ada+diggan", b)):
            recs.append({"group": "obama", "arm": arm, "seed": seed, "status": "scored", "kimg": 1.0,
                         "total_kimg": 1.0, "final_kid": kid, "final_fid": None, "end_kid": kid, "min_kid": kid,
                         "min_kid_kimg": 1.0, "final_augment_p": 0.1, "final_dig": 0.01, "final_logit_gap": 1.0,
                         "train_seconds": 10.0})
    pr = paired(recs, "obama", "ada+diggan", "ada", "final_kid")
    assert pr["diffs"] == pytest.approx([-0.10, 0.02, -0.09]) and pr["better"] == 2
    assert pr["mean"] == pytest.approx(-0.17 / 3) and 0 < pr["p_t"] < 1
    md = group_markdown(recs, "obama", [("ada+diggan", "ada")])
    assert "| ada+diggan − ada | -100.0 | +20.0 | -90.0 | -56.7 ± 66.6 | 2/3 | 0.28 |" in md
    assert "6/6 runs trained, 6/6 scored" in md


def test_window_means_show_a_slow_trend_per_run() -> None:
    xs = [0.5 * i for i in range(1, 17)]  # ticks at 0.5 .. 8 kimg; the last one closes the final window
    assert window_means(xs, [float(i) for i in range(1, 17)], 2.0, 8.0) == [2.5, 6.5, 10.5, 14.5]
    assert window_means(xs, [None] * 16, 4.0, 8.0) == [None, None]
    curves = {"kimg": xs, "augment_p": [0.01 * (i // 4) for i in range(16)], "D_real": [2.0] * 16,
              "D_fake": [1.0] * 16, "kid_kimg": [4.0, 8.0], "kid": [0.3, 0.2]}
    recs = [{"group": "obama", "arm": "ada", "seed": 0, "curves": curves},
            {"group": "obama", "arm": "none", "seed": 0, "curves": {**curves, "augment_p": [0.0] * 16}}]
    md = windows_markdown(recs, "obama", width=2.0)
    assert "| ADA p | 0–2 | 2–4 | 4–6 | 6–8 |" in md
    assert "| ada s0 | 0.000 | 0.010 | 0.020 | 0.030 |" in md and "| none s0 | 0.000" not in md  # p all zero: no row
    assert "| none s0 | 1.00 | 1.00 | 1.00 | 1.00 |" in md  # the logit gap
    assert "| ada s0 | – | 300 | – | 200 |" in md  # snapshot KID: in the window each snapshot closes


def test_curves_figure_draws_each_run_and_no_flat_p_without_ada(tmp_path: Path) -> None:
    from PIL import Image

    xs = [1.0, 2.0, 3.0, 4.0]
    curves = {"kimg": xs, "augment_p": [0.0, 0.1, 0.2, 0.1], "dig": [0.5, 0.4, 0.3, 0.3], "D_real": [2.0] * 4,
              "D_fake": [1.0] * 4, "kid_kimg": [2.0, 4.0], "kid": [0.3, 0.2]}
    ada = [{"group": "g", "arm": "ada", "seed": s, "curves": curves} for s in (0, 1)]
    plain = [{"group": "g", "arm": "none", "seed": 0, "curves": {**curves, "augment_p": [0.0] * 4}}]
    drawn = plot_group(ada + plain, "g", tmp_path / "with.png")
    assert drawn == {"KID (snapshot)": 3, "DIG": 3, "ADA p": 3, "D(real) − D(fake) logit": 3}
    drawn = plot_group(plain, "g", tmp_path / "without.png")
    assert drawn["ADA p"] == 0 and drawn["KID (snapshot)"] == 1  # a flat zero would read as an ADA run at p 0
    assert Image.open(tmp_path / "without.png").size == (880, 520)
    assert plot_group(plain, "other", tmp_path / "none.png") == {} and not (tmp_path / "none.png").exists()


@pytest.mark.needs_shared
@pytest.mark.skipif(not (DATASETS_DIR / "100-shot-obama").exists(), reason="../shared/datasets is absent")
def test_paper_gpu_dry_run_lists_its_runs(capsys, tmp_path: Path) -> None:
    quality.main(["--protocol", "paper-gpu", "--dry-run", "--status", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:4] for line in lines] == [["obama", "ada", "seed", "0:"], ["obama", "ada+diggan", "seed", "0:"]]
    assert all(line.endswith("new") for line in lines)


def test_set_overrides_every_arm_and_status_shows_kept_runs(capsys, tmp_path: Path) -> None:
    import grid

    with pytest.raises(SystemExit, match="unknown config key 'perf.nope'"):
        quality.main(["--set", "perf.nope=1", "--status", "--out", str(tmp_path / "out")])

    # A record kept by an earlier sitting for the bf16 variant of `none`, seed 0, stands in for that run only.
    base = quality.apply_overrides(quality.cpu_overfit_32(), {"perf.precision": "bf16"})
    [spec] = build_specs(base, [quality.make_arm("none", base)], [0], "obama", DATASETS_DIR / "100-shot-obama")
    grid.keep_record(tmp_path / "records", spec, {"arm": "none", "seed": 0, "status": "scored", "final_kid": 0.1})
    argv = ["--datasets", "100-shot-obama", "--arms", "none", "--status", "--out", str(tmp_path / "out"),
            "--records", str(tmp_path / "records")]
    quality.main(argv + ["--set", "perf.precision=bf16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":", 1)[1].strip() for line in lines] == ["kept (scored in an earlier sitting)", "new", "new"]
    quality.main(argv)  # float32: the bf16 record is another config, and the note says how it differs
    note, first, *_ = capsys.readouterr().out.strip().splitlines()
    assert "kept for another config (differs in ['perf'])" in note and first.endswith("seed 0: new")

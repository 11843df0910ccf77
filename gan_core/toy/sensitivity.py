"""Post-hoc sensitivity of the paper-variant toy: Experiments 1 and 3 with ONE setting changed at a time.

This does not choose settings (they are fixed in settings.py and the main table uses them); it asks
whether the main result depends on a lost number. Each variant reruns Exp. 1 (vanilla) and Exp. 3
(DigGAN) from each seed's initial nets with the changed setting, and reports the same paired tests.

    python -m gan_core.toy.sensitivity --seeds 50 --out runs/toy-paper-50
        -> out/sensitivity.json (and out/states/sens-<name>.pt, reused on a rerun)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import analysis as A
from .experiments import _exp13, _exp13_records, _json_safe, _key, _log10, _progress_printer, _quantiles, _stage
from .settings import PAPER_SETTINGS, PaperSettings
from .stats import mcnemar_exact, wilcoxon_paired
from .train import one_thread

__all__ = ["VARIANTS", "run_sensitivity"]

# name -> the one changed setting. lambda: the paper's sweep grid around our 100 (paper Fig. 9: 1 ... 100k);
# latents +-5: the two generated points start apart (with +-1 both start near 0, see the main summary).
VARIANTS: dict[str, dict[str, Any]] = {
    "lambda=1": {"lam": 1.0},
    "lambda=10": {"lam": 10.0},
    "lambda=1000": {"lam": 1000.0},
    "latents=+-5": {"latents": (-5.0, 5.0)},
}


def _summarise(st: PaperSettings, van: list[dict], dgn: list[dict]) -> dict[str, Any]:
    return {
        "vanilla_outcomes": {o: [r["outcome"] for r in van].count(o) for o in sorted({r["outcome"] for r in van})},
        "diggan_outcomes": {o: [r["outcome"] for r in dgn].count(o) for o in sorted({r["outcome"] for r in dgn})},
        "coverage": mcnemar_exact([r["outcome"] == A.BOTH for r in dgn], [r["outcome"] == A.BOTH for r in van],
                                  "diggan", "vanilla"),
        "dig": wilcoxon_paired([_log10(r["dig_median"]) for r in van], [_log10(r["dig_median"]) for r in dgn],
                               "vanilla", "diggan"),
        "diggan_merged": sum(r["final_spread"] < 0.1 for r in dgn),
        "vanilla_merged": sum(r["final_spread"] < 0.1 for r in van),
        "diggan_off_data": sum(max(abs(v) for v in r["final_x"]) > 6 for r in dgn),
        "vanilla_off_data": sum(max(abs(v) for v in r["final_x"]) > 6 for r in van),
        "vanilla_collapse_iter": _quantiles([r["collapse_iter"] for r in van if r["collapse_iter"] is not None]),
        "start_spread": _quantiles([abs(r["start_x"][0] - r["start_x"][1]) for r in van]),
    }


def run_sensitivity(seeds: int | Sequence[int] = 50, out_dir: Path = Path("runs/toy"),
                    variants: dict[str, dict[str, Any]] | None = None, progress: bool = True) -> dict[str, Any]:
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    out_dir = Path(out_dir)
    report = _progress_printer(progress)
    result: dict[str, Any] = {"base_settings": PAPER_SETTINGS.to_dict(), "seeds": seed_list, "variants": {}}
    for name, change in (variants or VARIANTS).items():
        st = dataclasses.replace(PAPER_SETTINGS, **change)

        def compute(st: PaperSettings = st, name: str = name) -> dict[str, Any]:
            return _exp13(seed_list, st, lambda stage, t, n: report(f"{name}: {stage}", t, n))

        with one_thread():
            s13 = _stage(out_dir, f"sens-{name}", _key("exp13", st, seed_list), compute)
        van, dgn = _exp13_records(seed_list, st, s13)
        result["variants"][name] = {"changed": change, **_summarise(st, van, dgn),
                                    "per_seed": [{"seed": v["seed"], "vanilla": v["outcome"], "diggan": d["outcome"],
                                                  "vanilla_final_x": v["final_x"], "diggan_final_x": d["final_x"]}
                                                 for v, d in zip(van, dgn)]}
    result = _json_safe(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sensitivity.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    return result


def plot_lambda(main_summary: dict[str, Any], sens: dict[str, Any], path: Path) -> None:
    """Exp. 1/3 endings against DigGAN's lambda (the main run's 100 plus the lambda variants), vanilla as a line."""
    from .figures import _plt

    plt = _plt()
    rows = {PAPER_SETTINGS.lam: main_summary["experiment3_diggan"]}
    for v in sens["variants"].values():
        if set(v["changed"]) == {"lam"}:
            rows[float(v["changed"]["lam"])] = [{"outcome": r["diggan"], "final_x": r["diggan_final_x"]}
                                                for r in v["per_seed"]]
    lams = sorted(rows)
    n = len(main_summary["seeds"])
    van_both = sum(r["outcome"] == A.BOTH for r in main_summary["experiment1_vanilla"])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    series = {
        "covers both points": lambda r: r["outcome"] == A.BOTH,
        "points merged (|x1 - x2| < 0.1)": lambda r: abs(r["final_x"][0] - r["final_x"][1]) < 0.1,
        "a point off the data (|x| > 6)": lambda r: max(abs(x) for x in r["final_x"]) > 6,
    }
    for (label, fn), marker in zip(series.items(), "osx"):
        ax.plot(lams, [sum(fn(r) for r in rows[lam]) for lam in lams], marker=marker, label=f"DigGAN: {label}")
    ax.axhline(van_both, color="tab:blue", ls="--", lw=1, label=f"vanilla: covers both ({van_both})")
    ax.set_xscale("log")
    ax.set_xlabel("DigGAN lambda (main run: 100)")
    ax.set_ylabel(f"seeds (of {n})")
    ax.set_title("Toy Exp. 1/3 end states against lambda (post-hoc sensitivity, same seeds)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gan_core.toy.sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path("runs/toy"))
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    chosen = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only.split(",")}
    res = run_sensitivity(args.seeds, args.out, chosen, progress=not args.no_progress)
    main_path = args.out / "summary.json"
    if main_path.exists():  # the main run of the same seeds: draw lambda against its lambda-100 run
        plot_lambda(json.loads(main_path.read_text()), res, args.out / "toy-lambda.png")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_seed"} for k, v in res["variants"].items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The DigGAN paper's toy (section 3.3, Experiments 1-4) as written, over many seeds.

    run_paper(seeds=20, out_dir=Path("runs/toy")) -> summary dict (also out_dir/summary.json)

Stages, each saved under out_dir/states/ (a rerun with the same settings and seeds reuses a saved
stage, so an interrupted run resumes at the stage it was in):

  exp13   Exp. 1 (vanilla) and Exp. 3 (DigGAN) from the same initial G0, D0 of each seed, the same
          pairing coins, trained together as one batch.
  exp2    from each seed's Exp. 1 end state (G1, D1): D1 + N(0, s) on every parameter, s = 0 (control)
          and the paper's noise variances, then vanilla training.
  exp4_d  G2 = the Exp. 2 s = 5 final G, read back from states/exp2.pt; D (from the same run's final D)
          trained alone against the frozen G2 with the DigGAN objective (Eq. 3): "D to optimality".
  exp4    from (G2, D2): DigGAN, and vanilla as the control, with the same pairing coins.

Every number and reading rule is in gan_core/toy/settings.py. The tests are in gan_core/toy/stats.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import analysis as A
from .nets import BatchedMLP
from .settings import PAPER_SETTINGS, PaperSettings
from .stats import mcnemar_exact, proportion, wilcoxon_paired
from .train import History, one_thread, pairing_coins, stream_key, train

__all__ = ["STATE_VERSION", "load_stage", "run_paper"]

STATE_VERSION = 1  # bump when a stage's contents or meaning change: old saved stages are then recomputed
G_TAG, D_TAG = 1, 2  # init streams of G and D
COINS_EXP13, COINS_EXP2, COINS_EXP4_D, COINS_EXP4 = 11, 12, 13, 14  # pairing-coin streams
NOISE_STREAM = 200  # + variance index: Exp. 2's noise


# --------------------------------------------------------------------------- stages on disk


def _key(name: str, st: PaperSettings, seeds: Sequence[int]) -> dict[str, Any]:
    return {"stage": name, "version": STATE_VERSION, "settings": st.to_dict(), "seeds": [int(s) for s in seeds]}


def load_stage(out_dir: Path, name: str) -> dict[str, Any]:
    """A saved stage: {"key": ..., "G": [tensors], "D": [tensors], "x", "dig", "loss_d": tensors, ...}."""
    return torch.load(Path(out_dir) / "states" / f"{name}.pt", weights_only=True)


def _stage(out_dir: Path, name: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    path = Path(out_dir) / "states" / f"{name}.pt"
    if path.exists():
        try:
            saved = load_stage(out_dir, name)
        except (OSError, RuntimeError, EOFError, ValueError):  # a torn or foreign file: recompute it
            saved = None
        if saved is not None and json.dumps(saved.get("key"), sort_keys=True) == json.dumps(key, sort_keys=True):
            return saved
    data = compute()
    data["key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(data, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written stage
    return data


def _pack(G: BatchedMLP, D: BatchedMLP, hist: History) -> dict[str, Any]:
    return {"G": G.weights(), "D": D.weights(), "x": torch.from_numpy(hist.x), "dig": torch.from_numpy(hist.dig),
            "loss_d": torch.from_numpy(hist.loss_d)}


def _nets(stage: dict[str, Any], st: PaperSettings, idx: Sequence[int] | None = None) -> tuple[BatchedMLP, BatchedMLP]:
    G = BatchedMLP(st.g_sizes, st.g_act, stage["G"])
    D = BatchedMLP(st.d_sizes, st.d_act, stage["D"])
    return (G, D) if idx is None else (G.select(idx), D.select(idx))


# --------------------------------------------------------------------------- the experiments


def _exp13(seeds: list[int], st: PaperSettings, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    S = len(seeds)
    G0 = BatchedMLP.init(st.g_sizes, st.g_act, seeds, G_TAG)
    D0 = BatchedMLP.init(st.d_sizes, st.d_act, seeds, D_TAG)
    G, D = BatchedMLP.cat([G0, G0]), BatchedMLP.cat([D0, D0])
    coins = pairing_coins(seeds, COINS_EXP13, st.iterations).repeat(2, 1)
    hist = train(G, D, st, lam=[0.0] * S + [st.lam] * S, iterations=st.iterations, coins=coins,
                 on_step=lambda t: progress("exp 1+3", t, st.iterations))
    return _pack(G, D, hist)


def _exp2(seeds: list[int], st: PaperSettings, exp13: dict[str, Any],
          progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    S = len(seeds)
    G1, D1 = _nets(exp13, st, range(S))  # the vanilla half: Exp. 1's end states
    variances = (0.0,) + tuple(st.noise_variances)
    Gs, Ds = [], []
    for vi, var in enumerate(variances):
        D = D1.select(range(S))
        if var > 0:
            D.add_gaussian_noise_(var, [torch.Generator().manual_seed(stream_key(s, NOISE_STREAM + vi)) for s in seeds])
        Gs.append(G1.select(range(S)))
        Ds.append(D)
    G, D = BatchedMLP.cat(Gs), BatchedMLP.cat(Ds)
    coins = pairing_coins(seeds, COINS_EXP2, st.iterations).repeat(len(variances), 1)
    start_D = D.weights()
    hist = train(G, D, st, lam=0.0, iterations=st.iterations, coins=coins,
                 on_step=lambda t: progress("exp 2", t, st.iterations))
    out = _pack(G, D, hist)
    out["D_start"] = start_D
    out["variances"] = torch.tensor(variances, dtype=torch.float64)
    return out


def _exp4_start(seeds: list[int], st: PaperSettings, exp2: dict[str, Any],
                progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    """G2 = Exp. 2's final G at s = exp4_variance; D trained alone against it (DigGAN objective)."""
    S = len(seeds)
    vi = [float(v) for v in exp2["variances"]].index(st.exp4_variance)
    idx = range(vi * S, (vi + 1) * S)
    G2, D = _nets(exp2, st, idx)
    coins = pairing_coins(seeds, COINS_EXP4_D, st.d_opt_steps)
    hist = train(G2, D, st, lam=st.lam, iterations=st.d_opt_steps, coins=coins, train_g=False,
                 on_step=lambda t: progress("exp 4: D to optimality", t, st.d_opt_steps))
    out = _pack(G2, D, hist)
    out["G_source"] = exp2["G"][0][list(idx)].clone()  # first layer of the G read from exp2 (a provenance check)
    return out


def _exp4(seeds: list[int], st: PaperSettings, start: dict[str, Any],
          progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    S = len(seeds)
    G2, D2 = _nets(start, st)
    G, D = BatchedMLP.cat([G2, G2]), BatchedMLP.cat([D2, D2])
    coins = pairing_coins(seeds, COINS_EXP4, st.iterations).repeat(2, 1)
    hist = train(G, D, st, lam=[st.lam] * S + [0.0] * S, iterations=st.iterations, coins=coins,
                 on_step=lambda t: progress("exp 4", t, st.iterations))
    return _pack(G, D, hist)


# --------------------------------------------------------------------------- per-seed records


def _run_record(x: np.ndarray, dig: np.ndarray, st: PaperSettings) -> dict[str, Any]:
    tail = dig[-st.settle_window:] if dig.size else dig
    return {
        "outcome": A.outcome(x[-1], st),
        "final_x": [round(float(v), 4) for v in x[-1]],
        "settled": A.settled(x, st),
        "dig_median": float(np.median(dig)) if dig.size else None,
        "dig_max": float(dig.max()) if dig.size else None,
        "dig_max_iter": int(dig.argmax()) if dig.size else None,
        "dig_final": float(tail.mean()) if tail.size else None,
    }


def d_logit_range(stage: dict[str, Any], st: PaperSettings) -> np.ndarray:
    """Per model: max - min of D's final logit on [min(real) - 2, max(real) + 2] (how flat D ends)."""
    _, D = _nets(stage, st)
    grid = torch.linspace(min(st.real_points) - 2, max(st.real_points) + 2, 81).view(1, -1, 1)
    with torch.no_grad(), one_thread():
        logits = D(grid.expand(D.n_models, -1, -1).contiguous()).squeeze(-1)
    return (logits.max(1).values - logits.min(1).values).numpy()


def _exp13_records(seeds: list[int], st: PaperSettings, s13: dict[str, Any]) -> tuple[list, list]:
    S = len(seeds)
    x, dig = s13["x"].numpy(), s13["dig"].numpy()
    d_range = d_logit_range(s13, st)
    van, dgn = [], []
    for i, seed in enumerate(seeds):
        for rows, j in ((van, i), (dgn, S + i)):
            r = {"seed": seed, **_run_record(x[j], dig[j], st)}
            r["start_x"] = [round(float(v), 4) for v in x[j, 0]]
            r["final_spread"] = float(abs(x[j, -1, 0] - x[j, -1, 1]))
            r["d_logit_range"] = float(d_range[j])
            r["collapse_iter"] = A.collapse_iter(x[j], st)
            r["dig_spike"] = A.dig_spike(dig[j], r["collapse_iter"], st)
            rows.append(r)
    return van, dgn


def _exp2_records(seeds: list[int], st: PaperSettings, s2: dict[str, Any], van: list[dict]) -> dict[str, list]:
    S = len(seeds)
    x, dig = s2["x"].numpy(), s2["dig"].numpy()
    out: dict[str, list] = {}
    for vi, var in enumerate(float(v) for v in s2["variances"]):
        rows = []
        for i, seed in enumerate(seeds):
            j = vi * S + i
            r = {"seed": seed, "exp1_outcome": van[i]["outcome"], **_run_record(x[j], dig[j], st)}
            before, after = van[i]["outcome"], r["outcome"]
            if not r["settled"]:
                r["result"] = "not_converged"
            elif after == A.BOTH:
                r["result"] = "both_modes"
            elif A.is_single_mode(after) and after == before:
                r["result"] = "same_attractor"
            elif A.is_single_mode(after):
                r["result"] = "other_single_mode"
            else:
                r["result"] = "neither"
            rows.append(r)
        out[f"{var:g}"] = rows
    return out


def _exp4_records(seeds: list[int], st: PaperSettings, start: dict[str, Any], s4: dict[str, Any]) -> list[dict]:
    S = len(seeds)
    x, dig = s4["x"].numpy(), s4["dig"].numpy()
    loss = start["loss_d"].numpy()
    w = min(500, loss.shape[1])
    rows = []
    for i, seed in enumerate(seeds):
        g2 = start["x"].numpy()[i, 0]
        r: dict[str, Any] = {
            "seed": seed,
            "start_x": [round(float(v), 4) for v in g2],
            "start_outcome": A.outcome(g2, st),
            "d_opt_final_loss": float(loss[i, -1]) if loss.size else None,
            "d_opt_loss_change_last_500": float(loss[i, -1] - loss[i, -w]) if loss.size else None,
        }
        r["trapped_start"] = A.is_single_mode(r["start_outcome"])
        for name, j in (("diggan", i), ("vanilla", S + i)):
            rec = _run_record(x[j], dig[j], st)
            rec["escaped"] = rec["outcome"] == A.BOTH
            rec["perturbation_onset"] = A.perturbation_onset(x[j], st)
            r[name] = rec
        rows.append(r)
    return rows


# --------------------------------------------------------------------------- tests and the summary


def _quantiles(v: Sequence[float]) -> dict[str, float] | None:
    if not len(v):
        return None
    q = np.percentile(np.asarray(v, np.float64), [25, 50, 75])
    return {"n": len(v), "p25": float(q[0]), "median": float(q[1]), "p75": float(q[2])}


def _log10(v: float | None) -> float:
    return math.log10(max(float(v or 0.0), 1e-12))


def _tests(st: PaperSettings, van: list, dgn: list, e2: dict[str, list], e4: list) -> dict[str, Any]:
    n = len(van)
    t: dict[str, Any] = {}
    single = [A.is_single_mode(r["outcome"]) for r in van]
    t["exp1_single_mode"] = {**proportion(sum(single), n),
                             "outcomes": {o: [r["outcome"] for r in van].count(o) for o in sorted({r["outcome"] for r in van})},
                             "collapse_iter": _quantiles([r["collapse_iter"] for r in van if r["collapse_iter"] is not None])}
    spikes = [r["dig_spike"] for r in van if r["dig_spike"] is not None]
    t["exp1_dig_spike"] = {
        "what": f"log10 DIG peak in the {st.spike_window} iterations before the collapse vs in the "
                f"{st.spike_window} before those, vanilla runs that end in one mode (collapse >= {2 * st.spike_window})",
        **wilcoxon_paired([_log10(s["peak_pre"]) for s in spikes], [_log10(s["peak_prev"]) for s in spikes],
                          "log10_peak_pre", "log10_peak_prev"),
        "collapsed_runs_too_early_to_test": sum(1 for r in van if r["collapse_iter"] is not None and r["dig_spike"] is None),
    }
    t["exp3_vs_exp1_coverage"] = {
        "what": "ends covering both points: DigGAN (Exp. 3) vs vanilla (Exp. 1), paired by seed",
        **mcnemar_exact([r["outcome"] == A.BOTH for r in dgn], [r["outcome"] == A.BOTH for r in van], "diggan", "vanilla"),
    }
    t["exp3_vs_exp1_dig"] = {
        "what": "log10 of the run's median DIG: vanilla (Exp. 1) vs DigGAN (Exp. 3), paired by seed",
        **wilcoxon_paired([_log10(r["dig_median"]) for r in van], [_log10(r["dig_median"]) for r in dgn],
                          "vanilla", "diggan"),
    }
    t["mechanism"] = {
        "what": "how each run ends (Exp. 1 vanilla vs Exp. 3 DigGAN, paired by seed): D's logit range on "
                "[min-2, max+2] (flatness), the two points merged (|x1 - x2| < 0.1), a point off the data (|x| > 6)",
        "d_logit_range": wilcoxon_paired([_log10(r["d_logit_range"]) for r in van],
                                         [_log10(r["d_logit_range"]) for r in dgn], "log10_vanilla", "log10_diggan"),
        "merged": mcnemar_exact([r["final_spread"] < 0.1 for r in van], [r["final_spread"] < 0.1 for r in dgn],
                                "vanilla", "diggan"),
        "off_data": mcnemar_exact([max(abs(v) for v in r["final_x"]) > 6 for r in van],
                                  [max(abs(v) for v in r["final_x"]) > 6 for r in dgn], "vanilla", "diggan"),
        "start_spread": _quantiles([abs(r["start_x"][0] - r["start_x"][1]) for r in van]),
    }
    stuck = [i for i, s in enumerate(single) if s]
    control = e2["0"]
    e2t: dict[str, Any] = {"stuck_seeds": [van[i]["seed"] for i in stuck]}
    for key, rows in e2.items():
        res = [rows[i]["result"] for i in stuck]
        e2t[key] = {
            "results_on_stuck_seeds": {k: res.count(k) for k in
                                       ("same_attractor", "other_single_mode", "both_modes", "neither", "not_converged")},
            "same_attractor": proportion(res.count("same_attractor"), len(stuck)),
            "other_single_mode": proportion(res.count("other_single_mode"), len(stuck)),
            "both_modes": proportion(res.count("both_modes"), len(stuck)),
            "not_converged": proportion(res.count("not_converged"), len(stuck)),
            "ends_both_at_4": proportion(sum(rows[i]["outcome"] == f"mode@{st.real_points[1]:g}" for i in stuck), len(stuck)),
            "vs_control_same_attractor": mcnemar_exact([rows[i]["result"] == "same_attractor" for i in stuck],
                                                       [control[i]["result"] == "same_attractor" for i in stuck],
                                                       "noised", "control") if key != "0" else None,
        }
    t["exp2"] = e2t
    trapped = [r for r in e4 if r["trapped_start"]]
    at4 = [r for r in trapped if r["start_outcome"] == f"mode@{st.real_points[1]:g}"]
    t["exp4_start"] = {"trapped_starts": proportion(len(trapped), len(e4)),
                       "starts_both_at_4": proportion(len(at4), len(e4)),
                       "start_outcomes": {o: [r["start_outcome"] for r in e4].count(o)
                                          for o in sorted({r["start_outcome"] for r in e4})}}
    for name, rows in (("exp4_trapped", trapped), ("exp4_at_4", at4), ("exp4_all", e4)):
        t[name] = {
            "what": "escapes (ends covering both points): DigGAN vs vanilla from the same (G2, D2), paired by seed",
            **mcnemar_exact([r["diggan"]["escaped"] for r in rows], [r["vanilla"]["escaped"] for r in rows],
                            "diggan", "vanilla"),
            "diggan_onset": _quantiles([r["diggan"]["perturbation_onset"] for r in rows
                                        if r["diggan"]["perturbation_onset"] is not None]),
            "vanilla_onset": _quantiles([r["vanilla"]["perturbation_onset"] for r in rows
                                         if r["vanilla"]["perturbation_onset"] is not None]),
        }
    t["exp4_leaves_start_mode_post_hoc"] = {
        "what": "POST HOC (defined after the first 50-seed run): from a one-mode start, the run ends anywhere but "
                "in that same mode (the paper's 'remains trapped' read literally); DigGAN vs vanilla, paired by seed",
        **mcnemar_exact([r["diggan"]["outcome"] != r["start_outcome"] for r in trapped],
                        [r["vanilla"]["outcome"] != r["start_outcome"] for r in trapped], "diggan", "vanilla"),
    }
    return t


def _progress_printer(enabled: bool) -> Callable[[str, int, int], None]:
    t0 = time.perf_counter()

    def report(stage: str, t: int, total: int) -> None:
        if enabled and (t % 1000 == 0 or t == total):
            print(f"toy: {stage}: {t}/{total} ({time.perf_counter() - t0:.0f} s)", flush=True)

    return report


def run_paper(
    seeds: int | Sequence[int] = 20,
    out_dir: Path = Path("runs/toy"),
    *,
    settings: PaperSettings | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict[str, Any]:
    """Run Experiments 1-4 over `seeds` (a count n: seeds 0..n-1, or a list) and write out_dir/summary.json
    (settings, per-seed values, the paired tests) and, with figures, out_dir/toy-*.png."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    st = settings or PAPER_SETTINGS
    seed_list = list(range(int(seeds))) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("need at least one seed")
    if st.iterations < 1 or st.d_opt_steps < 0:
        raise ValueError("iterations must be >= 1 and d_opt_steps >= 0")
    if st.exp4_variance not in st.noise_variances:
        raise ValueError("exp4_variance must be one of noise_variances")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _progress_printer(progress)
    with one_thread():
        s13 = _stage(out_dir, "exp13", _key("exp13", st, seed_list), lambda: _exp13(seed_list, st, report))
        s2 = _stage(out_dir, "exp2", _key("exp2", st, seed_list), lambda: _exp2(seed_list, st, s13, report))
        # Exp. 4 reads Exp. 2's end state back from disk: the very state that was saved
        s2_saved = load_stage(out_dir, "exp2")
        s4d = _stage(out_dir, "exp4_d", _key("exp4_d", st, seed_list), lambda: _exp4_start(seed_list, st, s2_saved, report))
        s4 = _stage(out_dir, "exp4", _key("exp4", st, seed_list), lambda: _exp4(seed_list, st, s4d, report))

    van, dgn = _exp13_records(seed_list, st, s13)
    e2 = _exp2_records(seed_list, st, s2, van)
    e4 = _exp4_records(seed_list, st, s4d, s4)
    summary: dict[str, Any] = {
        "variant": "paper",
        "settings": st.to_dict(),
        "seeds": seed_list,
        "tests": _tests(st, van, dgn, e2, e4),
        "experiment1_vanilla": van,
        "experiment3_diggan": dgn,
        "experiment2": e2,
        "experiment4": e4,
        "torch_version": torch.__version__,
        "threads": 1,
    }
    if figures:
        from .figures import write_paper_figures

        summary["figures"] = write_paper_figures(out_dir, st, seed_list, summary, s13, s2, s4d, s4)
    summary["wall_time_s"] = round(time.perf_counter() - t_start, 2)
    summary["cpu_time_s"] = round(time.process_time() - cpu_start, 2)
    summary = _json_safe(summary)
    tmp = out_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
    tmp.replace(out_dir / "summary.json")
    return summary


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x

"""Tables and curves for a grid's records (bench/grid.py `collect`): per-seed values, mean and spread
per arm, paired differences per seed (treatment minus baseline, same seed), and KID/DIG/p/logit curves.

KID columns never mix estimates: `final KID` is the end-of-run score on `final_num_gen` images,
`end KID` the cheap snapshot score of the same final checkpoint, `min KID` the lowest cheap score
over the snapshots (and where). A blank means that stage has not run yet.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

Records = list[dict[str, Any]]


def _mean_sd(vals: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def _fmt(v: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if v is None else f"{v * scale:.{digits}f}"


def _fmt_ms(m: float | None, s: float | None, scale: float = 1.0, digits: int = 1) -> str:
    if m is None:
        return "–"
    return f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")


def groups_of(records: Records) -> list[str]:
    return list(dict.fromkeys(r["group"] for r in records))


def arms_of(records: Records) -> list[str]:
    return list(dict.fromkeys(r["arm"] for r in records))


def paired(records: Records, group: str, treat: str, base: str, key: str) -> dict[str, Any]:
    """Per-seed `key` differences treat - base over the seeds both arms have; mean, sd, paired t-test."""
    by = {(r["arm"], r["seed"]): r.get(key) for r in records if r["group"] == group}
    seeds = sorted(s for (a, s), v in by.items() if a == treat and v is not None and by.get((base, s)) is not None)
    diffs = [by[(treat, s)] - by[(base, s)] for s in seeds]
    out: dict[str, Any] = {"treat": treat, "base": base, "key": key, "seeds": seeds, "diffs": diffs,
                           "mean": None, "sd": None, "p_t": None, "better": sum(d < 0 for d in diffs)}
    if diffs:
        out["mean"], out["sd"] = _mean_sd(diffs)
    if len(diffs) >= 2 and out["sd"]:
        from scipy import stats

        out["p_t"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return out


def group_markdown(records: Records, group: str, pairs: list[tuple[str, str]], title: str = "") -> str:
    rs = [r for r in records if r["group"] == group]
    arms = arms_of(rs)
    seeds = sorted({r["seed"] for r in rs})
    lines = [f"### {title or group}", ""]
    done = sum(r["status"] in ("trained", "scored") for r in rs)
    scored = sum(r["status"] == "scored" for r in rs)
    missing = [f"{r['arm']} s{r['seed']} ({r['status']}, {r['kimg'] or 0:.1f}/{r['total_kimg']:g} kimg)"
               for r in rs if r["status"] not in ("trained", "scored")]
    ns = sorted({r["final_num_gen"] for r in rs if r.get("final_num_gen")})
    snap_n = sorted({r["snapshot_num_gen"] for r in rs if r.get("snapshot_num_gen")})
    lines.append(f"{done}/{len(rs)} runs trained, {scored}/{len(rs)} scored on the final sample"
                 f" (final KID/FID on {'/'.join(map(str, ns)) or '–'} generated images, snapshot KID on "
                 f"{'/'.join(map(str, snap_n)) or '–'}; real: the training images)."
                 + (f" Not finished: {', '.join(missing)}." if missing else ""))
    lines += ["", "| arm | runs | final KID ×1e3 | final FID | end KID ×1e3 (snapshot) | min KID ×1e3 (at kimg) "
              "| final p | final DIG | D logit gap | train s/run |", "| --- " * 10 + "|"]
    for arm in arms:
        ar = [r for r in rs if r["arm"] == arm and r["status"] in ("trained", "scored")]
        if not ar:
            continue
        fk, fk_sd = _mean_sd([r["final_kid"] for r in ar])
        ff, ff_sd = _mean_sd([r["final_fid"] for r in ar])
        ek, ek_sd = _mean_sd([r["end_kid"] for r in ar])
        mk, mk_sd = _mean_sd([r["min_kid"] for r in ar])
        mkk, _ = _mean_sd([r["min_kid_kimg"] for r in ar])
        p, _ = _mean_sd([r["final_augment_p"] for r in ar])
        dig, _ = _mean_sd([r["final_dig"] for r in ar])
        gap, _ = _mean_sd([r["final_logit_gap"] for r in ar])
        ts, _ = _mean_sd([r["train_seconds"] for r in ar])
        lines.append(f"| {arm} | {len(ar)} | {_fmt_ms(fk, fk_sd, 1e3)} | {_fmt_ms(ff, ff_sd)} | {_fmt_ms(ek, ek_sd, 1e3)} "
                     f"| {_fmt_ms(mk, mk_sd, 1e3)} ({_fmt(mkk)}) | {_fmt(p, digits=2)} | "
                     f"{'–' if dig is None else f'{dig:.3g}'} | {_fmt(gap, digits=2)} | {_fmt(ts, digits=0)} |")
    # per seed
    key = "final_kid" if any(r["final_kid"] is not None for r in rs) else "end_kid"
    label = "final KID" if key == "final_kid" else "end KID (snapshot)"
    lines += ["", f"Per seed, {label} ×1e3:", "", "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "| --- " * (len(seeds) + 1) + "|"]
    for arm in arms:
        vals = {r["seed"]: r[key] for r in rs if r["arm"] == arm}
        lines.append(f"| {arm} | " + " | ".join(_fmt(vals.get(s), 1e3) for s in seeds) + " |")
    if pairs:
        lines += ["", f"Paired by seed, {label} ×1e3 (treatment − baseline; negative = treatment better):", "",
                  "| treatment − baseline | " + " | ".join(f"seed {s}" for s in seeds)
                  + " | mean ± sd | better in | paired t p |", "| --- " * (len(seeds) + 4) + "|"]
        for treat, base in pairs:
            pr = paired(rs, group, treat, base, key)
            if not pr["seeds"]:
                continue
            d = dict(zip(pr["seeds"], pr["diffs"]))
            p_t = "–" if pr["p_t"] is None else f"{pr['p_t']:.2g}"
            lines.append(f"| {treat} − {base} | " + " | ".join(
                ("–" if s not in d else f"{d[s] * 1e3:+.1f}") for s in seeds)
                + f" | {_fmt_ms(pr['mean'], pr['sd'], 1e3)} | {pr['better']}/{len(pr['diffs'])} | {p_t} |")
    return "\n".join(lines) + "\n"


WINDOW_SERIES = (  # (curve, its x, label, scale, digits): the trends the item-3 reading rests on
    ("augment_p", "kimg", "ADA p", 1.0, 3),
    ("logit_gap", "kimg", "D(real) − D(fake) logit", 1.0, 2),
    ("kid", "kid_kimg", "snapshot KID ×1e3", 1e3, 0),
)


def _series(curves: dict[str, Any], key: str) -> list[float | None]:
    if key == "logit_gap":
        return [None if a is None or b is None else a - b for a, b in zip(curves["D_real"], curves["D_fake"])]
    return curves.get(key) or []


def _window_count(end: float, width: float) -> int:
    return max(1, math.ceil(end / width - 1e-9))


def window_means(xs: list[float], ys: list[float | None], width: float, end: float) -> list[float | None]:
    """Mean of ys over (k*width, (k+1)*width] for k = 0 .. ceil(end/width) - 1 (a tick's x is the kimg at
    its end, so it belongs to the window it closes; x = 0 goes to the first); None where a window is empty.
    Per-tick values are noisy; a trend (ADA's p creeping up, KID turning back up) shows in window means."""
    n = _window_count(end, width)
    bins: list[list[float]] = [[] for _ in range(n)]
    for x, y in zip(xs, ys):
        if y is not None and math.isfinite(y) and 0 <= x <= n * width + 1e-9:
            bins[min(max(math.ceil(x / width - 1e-9) - 1, 0), n - 1)].append(y)
    return [statistics.fmean(b) if b else None for b in bins]


def windows_markdown(records: Records, group: str, width: float | None = None) -> str:
    """Per run, the mean of ADA p, the logit gap and the snapshot KID over windows of `width` kimg
    (default: an eighth of the longest run). Rows where a series is absent or all zero are left out."""
    rs = [r for r in records if r["group"] == group and r.get("curves", {}).get("kimg")]
    if not rs:
        return ""
    end = max(max(r["curves"]["kimg"]) for r in rs)
    width = width or max(1.0, round(end / 8))
    n = _window_count(end, width)
    head = [f"{k * width:g}–{(k + 1) * width:g}" for k in range(n)]
    arms = arms_of(rs)
    ordered = sorted(rs, key=lambda r: (arms.index(r["arm"]), r["seed"]))
    lines = ["Window means over kimg (per run; ticks for p and the gap, snapshots for KID):", ""]
    for key, xkey, label, scale, digits in WINDOW_SERIES:
        rows = []
        for r in ordered:
            c = r["curves"]
            ys = _series(c, key)
            if not any(y for y in ys if y is not None):
                continue
            means = window_means(c[xkey], ys, width, end)
            rows.append(f"| {r['arm']} s{r['seed']} | " + " | ".join(_fmt(m, scale, digits) for m in means) + " |")
        if rows:
            lines += [f"| {label} | " + " | ".join(head) + " |", "| --- " * (n + 1) + "|", *rows, ""]
    return "\n".join(lines) + "\n"


def plot_group(records: Records, group: str, path: Path, title: str = "") -> dict[str, int]:
    """Four panels over kimg: snapshot KID, DIG, ADA p, and D's logit gap (real - fake); one colour per
    arm, thin lines per seed, a thick line for the seed mean where all seeds share the x values.
    Returns the number of runs drawn in each panel (none: no figure written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in records if r["group"] == group and r["curves"]["kimg"]]
    if not rs:
        return {}
    drawn: dict[str, int] = {}
    arms = arms_of(rs)
    colors = dict(zip(arms, (plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)))
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    panels = [(axes[0, 0], "kid", "kid_kimg", "KID (snapshot)", True),
              (axes[0, 1], "dig", "kimg", "DIG", True),
              (axes[1, 0], "augment_p", "kimg", "ADA p", False),
              (axes[1, 1], "logit_gap", "kimg", "D(real) − D(fake) logit", False)]
    no_ada = not any(y for r in rs for y in _series(r["curves"], "augment_p") if y is not None)
    for ax, key, xkey, label, log in panels:
        drawn[label] = 0
        if key == "augment_p" and no_ada:  # a flat zero line would read like an ADA run that never raised p
            ax.text(0.5, 0.5, "no ADA run in this figure", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
            ax.set_ylabel(label)
            continue
        for arm in arms:
            series = []
            runs = [r for r in rs if r["arm"] == arm]
            thin = len(runs) > 1  # one run: its own line is the arm's line
            for r in runs:
                c = r["curves"]
                ys = _series(c, key)
                xs = c[xkey]
                pts = [(x, y) for x, y in zip(xs, ys) if y is not None and (not log or y > 0)]
                if key in ("dig", "logit_gap") and len(pts) > 10:
                    pts = _smooth(pts, 5)
                if pts:
                    ax.plot(*zip(*pts), color=colors[arm], alpha=0.35 if thin else 1.0, lw=0.8 if thin else 1.5)
                    series.append(pts)
                    drawn[label] += 1
            if len(series) > 1 and all(len(s) == len(series[0]) for s in series):
                xs = [p[0] for p in series[0]]
                ys = [statistics.fmean(s[i][1] for s in series) for i in range(len(xs))]
                ax.plot(xs, ys, color=colors[arm], lw=2, label=arm)
            elif series:
                ax.plot([], [], color=colors[arm], lw=2, label=arm)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("kimg")
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.suptitle(title or group, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return drawn


def _smooth(pts: list[tuple[float, float]], k: int) -> list[tuple[float, float]]:
    """Running mean over k ticks (DIG and logits are noisy per tick)."""
    out = []
    for i in range(len(pts)):
        win = pts[max(0, i - k + 1): i + 1]
        out.append((pts[i][0], statistics.fmean(y for _, y in win)))
    return out

"""The report's figures, drawn with matplotlib (Agg) from the series in series.py."""

from __future__ import annotations

import math
from pathlib import Path

from reidplug.core.plural import plural
from reidplug.report import names

DPI = 110
MAX_LEGEND = 12  # trials named in a legend; more get a colour bar or nothing


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def _best_word(mode: str) -> str:
    return "highest" if mode == "max" else "lowest"


def history(series: dict, path: Path) -> Path | None:
    """Optimisation history: best so far against trial number and against time."""
    by_trial, by_time = series["by_trial"], series["by_time"]
    if not by_trial["trial_id"] and not by_time["time_s"]:
        return None
    plt = _pyplot()
    metric, mode = series["metric"], series["mode"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax1.scatter(by_trial["trial_id"], by_trial["value"], s=18, color="tab:blue", alpha=0.7,
                label=f"trial's last {metric}")
    ax1.step(by_trial["trial_id"], by_trial["best"], where="post", color="tab:red", lw=2, label="best so far")
    ax1.set_xlabel("trial number")
    _integer_ticks(ax1.xaxis)
    ax1.set_ylabel(metric)
    ax1.set_title(f"{metric} by trial ({_best_word(mode)} is best)")
    ax1.legend(loc="best", fontsize=8)
    ax1.grid(alpha=0.3)
    minutes = max(by_time["time_s"] or [0.0]) > 600
    scale = 60.0 if minutes else 1.0
    t = [x / scale for x in by_time["time_s"]]
    ax2.scatter(t, by_time["value"], s=10, color="tab:gray", alpha=0.5, label=f"every {metric} reported")
    ax2.step(t, by_time["best"], where="post", color="tab:red", lw=2, label="best reported so far")
    ax2.set_xlabel("time since the experiment started (" + ("min" if minutes else "s") + ")")
    ax2.set_ylabel(metric)
    ax2.set_title(f"{metric} over time")
    ax2.legend(loc="best", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle("Optimisation history")
    return _save(fig, path)


def parallel(series: dict, path: Path) -> Path | None:
    """Parallel coordinates: params scaled to their domains (categories as positions), coloured by the metric."""
    axes, lines = series["axes"], series["lines"]
    if not axes or not lines:
        return None
    plt = _pyplot()
    from matplotlib import cm, colors

    metric = series["metric"]
    values = [ln["metric"] for ln in lines]
    lo, hi = min(values), max(values)
    norm = colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
    # The best trials are drawn last, on top, in the brightest colour.
    cmap = plt.get_cmap("viridis" if series["mode"] == "max" else "viridis_r")
    order = sorted(lines, key=lambda ln: ln["metric"] if series["mode"] == "max" else -ln["metric"])
    n = len(axes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * n + 2), 4.8))
    xs = list(range(n))
    for ln in order:
        ys = [u if u == u else math.nan for u in ln["unit"]]
        ax.plot(xs, ys, color=cmap(norm(ln["metric"])), lw=1.4, alpha=0.8)
    for i, axis in enumerate(axes):
        ax.axvline(i, color="black", lw=0.8)
        for u, label in axis["ticks"]:
            ax.plot([i - 0.03, i + 0.03], [u, u], color="black", lw=0.8)
            ax.annotate(label, (i, u), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center",
                        bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.8), zorder=5)
    ax.set_xticks(xs)
    short = names.short_names(a["name"] for a in axes)
    ax.set_xticklabels([_axis_title(a, short[a["name"]]) for a in axes], rotation=0, fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlim(-0.3, n - 0.4)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(f"{metric} (last result)")
    ax.set_title(f"Parallel coordinates of {plural(len(lines), 'trial')} (each axis spans its search domain)")
    return _save(fig, path)


def _axis_title(axis: dict, short: str) -> str:
    kind = {"loguniform": "log-uniform", "qloguniform": "log-uniform", "quniform": "uniform"}.get(
        axis.get("kind", ""), axis.get("kind", ""))
    return f"{names.wrap(short)}\n({kind})"


def _integer_ticks(axis) -> None:
    """Whole numbers only on an axis of trial numbers or steps."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def curves(series: dict, path: Path) -> Path | None:
    """Learning curves per trial, with the scheduler's pauses and stops and PBT's exploits marked."""
    trials = [t for t in series["trials"] if t["steps"]]
    if not trials:
        return None
    plt = _pyplot()
    metric = series["metric"]
    fig, ax = plt.subplots(figsize=(10, 5))
    cmap = plt.get_cmap("tab10" if len(trials) <= 10 else "viridis")
    marks = {"pause": False, "stop": False, "error": False, "exploit": False}
    for i, t in enumerate(trials):
        color = cmap(i % 10) if len(trials) <= 10 else cmap(i / max(len(trials) - 1, 1))
        label = f"trial {t['trial_id']}" if len(trials) <= MAX_LEGEND else None
        # A PBT exploit moves the trial onto a copy of its donor: its curve breaks there, and a dotted
        # line joins the donor's point to the first result made with the copy.
        cuts = sorted({ex["index"] for ex in t["exploits"] if ex["index"]})
        bounds = [0, *cuts, len(t["steps"])]
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            ax.plot(t["steps"][a:b], t["values"][a:b], marker=".", ms=4, lw=1.2, color=color, alpha=0.85,
                    label=label if k == 0 else None)
        for step, value in t["pauses"]:
            if value is not None:
                ax.plot(step, value, marker="o", ms=7, mfc="none", mec="goldenrod", mew=1.5, ls="none")
                marks["pause"] = True
        stop = t["stop"]
        if stop and stop["early"] and stop["value"] is not None:
            ax.plot(stop["step"], stop["value"], marker="x", ms=8, color="black", mew=2, ls="none")
            marks["stop"] = True
        if t["error"] and t["error"]["value"] is not None:
            ax.plot(t["error"]["step"], t["error"]["value"], marker="X", ms=9, color="red", ls="none")
            marks["error"] = True
        for ex in t["exploits"]:
            if ex["value"] is not None:
                ax.plot(ex["step"], ex["value"], marker="^", ms=7, color="purple", ls="none")
                if ex["donor_value"] is not None:
                    ax.plot([ex["donor_step"], ex["step"]], [ex["donor_value"], ex["value"]], ls=":", lw=1.2,
                            color=color)
                marks["exploit"] = True
    legend_marks = {
        "pause": dict(marker="o", mfc="none", mec="goldenrod", mew=1.5, label="paused by the scheduler"),
        "stop": dict(marker="x", color="black", mew=2, label="stopped early by the scheduler"),
        "error": dict(marker="X", color="red", label="failed"),
        "exploit": dict(marker="^", color="purple", label="first result after a PBT exploit (dotted: from the donor)"),
    }
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="none", ms=8, **legend_marks[k]) for k, used in marks.items() if used]
    if len(trials) <= MAX_LEGEND:
        handles = ax.get_legend_handles_labels()[0] + handles
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best", ncol=2 if len(handles) > 8 else 1)
    epochs = series.get("step_epochs")
    ax.set_xlabel("step" + (f" (a step is {epochs} epoch{'s' if epochs != 1 else ''})" if epochs else
                            " (budget units)"))
    _integer_ticks(ax.xaxis)
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves of {plural(len(trials), 'trial')}")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pbt(series: dict, path: Path) -> Path | None:
    """PBT: each hyperparameter's value by step for every trial, and who copied whom."""
    if not series.get("ran"):
        return None
    plt = _pyplot()
    schedule = series["schedule"]
    params = [n for n, per in schedule.items() if per]
    n_rows = len(params) + 1
    fig, axes = plt.subplots(n_rows, 1, figsize=(10, 2.2 * n_rows + 0.8), sharex=True, squeeze=False)
    axes = axes[:, 0]
    trial_ids = sorted({int(t) for per in schedule.values() for t in per} |
                       {e["trial_id"] for e in series["lineage"]} | {e["donor"] for e in series["lineage"]})
    cmap = plt.get_cmap("tab10" if len(trial_ids) <= 10 else "viridis")
    color = {tid: (cmap(i % 10) if len(trial_ids) <= 10 else cmap(i / max(len(trial_ids) - 1, 1)))
             for i, tid in enumerate(trial_ids)}
    # Where each of a trial's segments starts: step 0, then the donor's step of each exploit.
    starts: dict[int, list[int]] = {}
    for e in series["lineage"]:
        starts.setdefault(e["trial_id"], [0]).append(e["step"])
    short = names.short_names(params)
    for ax, name in zip(axes, params):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      for pts in schedule[name].values() for _, v, _ in pts)
        cats: list[str] = []
        ordered = sorted(schedule[name].items(), key=lambda kv: int(kv[0]))
        for rank, (tid, pts) in enumerate(ordered):
            # Trials on the same category would hide each other: each gets its own small offset.
            jitter = 0.0 if numeric else (rank - (len(ordered) - 1) / 2) * min(0.3 / max(len(ordered), 1), 0.06)
            for seg in sorted({p[2] for p in pts}):
                mine = [p for p in pts if p[2] == seg]
                for _, v, _ in ([] if numeric else mine):
                    if str(v) not in cats:
                        cats.append(str(v))
                ys = [v if numeric else cats.index(str(v)) + jitter for _, v, _ in mine]
                begin = starts.get(int(tid), [0])[seg] if seg < len(starts.get(int(tid), [0])) else mine[0][0] - 1
                # A value holds from the segment's start to its last result.
                ax.step([begin] + [s for s, _, _ in mine], [ys[0]] + ys, where="pre", color=color[int(tid)],
                        lw=1.4, alpha=0.85)
        if numeric and series.get("log", {}).get(name):
            ax.set_yscale("log")
        if not numeric:
            ax.set_yticks(range(len(cats)))
            ax.set_yticklabels(cats, fontsize=7)
        ax.set_ylabel(names.wrap(short[name]), fontsize=8)
        ax.grid(alpha=0.3)
    lineage_ax = axes[-1]
    for tid in trial_ids:
        pts = next((per[str(tid)] for per in schedule.values() if str(tid) in per), [])
        for seg in sorted({p[2] for p in pts}):
            steps = [p[0] for p in pts if p[2] == seg]
            begin = starts.get(tid, [0])[seg] if seg < len(starts.get(tid, [0])) else steps[0] - 1
            lineage_ax.plot([begin, max(steps)], [tid, tid], color=color[tid], lw=2.5, alpha=0.7,
                            solid_capstyle="butt")
    best = {(e["trial_id"], e["step"]) for e in series.get("best_ancestry", [])}
    for e in series["lineage"]:
        on_best = (e["trial_id"], e["step"]) in best
        lineage_ax.annotate("", xy=(e["step"], e["trial_id"]), xytext=(e["donor_step"], e["donor"]),
                            arrowprops=dict(arrowstyle="-|>", color="crimson" if on_best else "dimgray",
                                            lw=2.0 if on_best else 1.0, alpha=0.9,
                                            connectionstyle="arc3,rad=0.2"))
    lineage_ax.set_ylabel("trial")
    lineage_ax.set_yticks(trial_ids if len(trial_ids) <= 20 else trial_ids[:: max(len(trial_ids) // 20, 1)])
    lineage_ax.set_ylim(min(trial_ids) - 0.6, max(trial_ids) + 0.6)
    lineage_ax.set_xlabel("step (budget units)")
    lineage_ax.set_title("Lineage: each arrow goes from a donor's checkpoint to the trial that copied it"
                         + (" (red: the best trial's ancestry)" if best else ""), fontsize=9)
    lineage_ax.grid(alpha=0.3)
    axes[0].set_title(f"PBT hyperparameter schedule ({plural(len(series['exploits']), 'exploit')}): "
                      "the value each trial trained with, by step")
    return _save(fig, path)


def importance(result: dict, path: Path) -> Path | None:
    """Parameter importance as horizontal bars, the method named in the title."""
    if not result.get("importance"):
        return None
    plt = _pyplot()
    pairs = sorted(zip(result["params"], result["importance"]), key=lambda p: p[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(pairs) + 1.6))
    ax.barh([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue")
    for i, (_, v) in enumerate(pairs):
        ax.annotate(f"{v:.2f}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xlabel("share of the metric's variance explained by the parameter alone")
    ax.set_xlim(0, max(1e-9, max(p[1] for p in pairs)) * 1.15)
    n = result.get("n_trials", 0)
    rough = "; few trials, a rough estimate" if n < 20 else ""
    ax.set_title(f"Parameter importance: {result['method']}\n({n} trials{rough}; "
                 "the rest of the variance comes from interactions)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)

"""The end-of-experiment summary, as text."""

from __future__ import annotations

from reidplug.core.plural import plural


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary(summary: dict, top: int = 10) -> str:
    """A short report: counts, best trial and where the outputs are."""
    lines = [
        f"Experiment {summary['name']!r}: {plural(summary['num_trials'], 'trial')} "
        f"({', '.join(f'{v} {k.lower()}' for k, v in sorted(summary['status'].items()))}) "
        f"in {summary['time_used_s']:.1f} s",
    ]
    if summary.get("stopped_reason"):
        lines.append(f"Stopped early: {summary['stopped_reason']}")
    best = summary.get("best_result")
    if best:
        metric = summary["metric"]
        lines.append(f"Best trial {summary['best_trial']}: {metric}={_fmt(best.get(metric))} at step {best.get('step')}")
        for key, value in (summary.get("best_params") or {}).items():
            lines.append(f"  {key} = {_fmt(value)}")
        lines.append(f"Best config: {summary['dir']}/best_config.yaml")
    else:
        lines.append("No trial produced a result; see the error.txt files in the trial folders.")
    lines.append(f"Results: {summary['dir']}/results.csv  (disk used: {summary['disk_bytes'] / 2**20:.1f} MiB)")
    return "\n".join(lines)

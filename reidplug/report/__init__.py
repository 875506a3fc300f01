"""Reports of experiments (`reidplug report DIR`) and Re-ID visuals (rank lists, CMC curves)."""

from __future__ import annotations


def build_report(exp_dir, out_dir=None, **kwargs) -> dict:
    """Write plots, report.html and report.json of an experiment folder; see build.build_report."""
    from reidplug.report.build import build_report as build

    return build(exp_dir, out_dir, **kwargs)

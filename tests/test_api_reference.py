"""docs/api.md is generated from the docstrings and must match them."""

from __future__ import annotations

from pathlib import Path

from reidplug.core import apidoc

PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"
REGENERATE = "make api-docs (or: .venv/bin/python -m reidplug.core.apidoc --write docs/api.md)"


def test_the_page_is_up_to_date():
    assert PAGE.is_file(), f"docs/api.md is missing; write it with: {REGENERATE}"
    assert PAGE.read_text(encoding="utf-8") == apidoc.render(), (
        f"docs/api.md is out of date with the docstrings; regenerate it with: {REGENERATE}")


def test_the_page_covers_the_plugin_and_embedding_api():
    page = apidoc.render()
    for cls in ("Searcher", "Scheduler", "Reporter", "Executor", "Trainable", "Experiment", "Tuner",
                "SearchSpace", "Choice", "Uniform", "LogUniform", "QUniform", "QLogUniform", "RandInt"):
        assert f"### {cls}\n" in page, cls
    for member in ("Searcher._suggest", "Searcher.rng", "Choice.index", "RandInt.from_number", "Domain.to_unit",
                   "Domain.from_unit"):
        assert f"#### `{member}(" in page, member
    for attr in (".low", ".high", ".q", ".log", ".values"):
        assert f"`{attr}`" in page, attr
    for hook in ("register_searchers(register)", "on_trial_result(trial, result)",
                 "on_trial_decision(trial, result, decision, info)", "register_commands(cli)"):
        assert f"### `{hook}`" in page, hook


def test_the_output_is_stable():
    assert apidoc.render() == apidoc.render()
    assert " at 0x" not in apidoc.render()

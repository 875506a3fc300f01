"""The command line: one-line errors with exit code 2, config show/validate, plugins."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_cli


def test_config_show_applies_base_and_override():
    proc = run_cli("config", "show", "configs/market1501/bagtricks_R50.yml", "SOLVER.BASE_LR=0.001")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["SOLVER"]["BASE_LR"] == 0.001
    assert cfg["SOLVER"]["STEPS"] == [40, 90]  # from the _BASE_
    assert cfg["DATASETS"]["NAMES"] == ["Market1501"]
    assert cfg["OUTPUT_DIR"] == "logs/market1501/bagtricks_R50"


@pytest.mark.parametrize(
    "text, args, fragment",
    [
        ("SOLVER:\n  BASE_LR: fast\n", [], "SOLVER.BASE_LR: expected a number"),
        ("SOLVER: [1, 2\n", [], "invalid YAML"),
        ("_BASE_: missing.yml\n", [], "_BASE_: base config 'missing.yml' not found"),
        ("TUNE:\n  SEARCHER: hyperoptt\n", [], "unknown searcher 'hyperoptt'"),
        ("{}\n", ["SOLVER.BASE_LRR=1"], "SOLVER.BASE_LRR: unknown key"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(tmp_path, text, args, fragment):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    proc = run_cli("config", "validate", path, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_unknown_searcher_lists_the_available_ones(tmp_path):
    path = tmp_path / "search.yml"
    path.write_text("TUNE:\n  SEARCHER: nope\n")
    proc = run_cli("run", path)
    assert proc.returncode == 2
    assert "known searchers: " in proc.stderr and "random" in proc.stderr and str(path) in proc.stderr


def test_validate_accepts_a_good_config():
    proc = run_cli("config", "validate", "configs/market1501/bagtricks_R50.yml")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_plugins_json_lists_builtins_and_components():
    proc = run_cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["trainers"]["components"] == {"trainer": ["amp", "fp32"]}
    assert rows["schedulers.fifo"]["distribution"] == "reidplug" and rows["schedulers.fifo"]["builtin"]


def test_run_from_the_cli(tmp_path):
    path = tmp_path / "noop.yml"
    path.write_text(
        f"OUTPUT_DIR: {tmp_path}\nTUNE:\n  TRAINABLE: noop\n  NUM_TRIALS: 3\n  MAX_CONCURRENT: 2\n"
        "  SPACE:\n    x: {uniform: [0, 1]}\n"
    )
    proc = run_cli("run", path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Best trial" in proc.stdout and "[reidplug] trial" not in proc.stdout
    assert (tmp_path / "noop" / "best_config.yaml").exists()
    # The plots come with the run, as `reidplug report` would write them.
    assert (tmp_path / "noop" / "report" / "history.png").stat().st_size > 0
    assert "report.html" in proc.stdout
    again = run_cli("run", path)
    assert again.returncode == 2 and "already exists" in again.stderr
    resumed = run_cli("resume", tmp_path / "noop", "--quiet", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert "report.html" not in resumed.stdout


def test_version_and_help():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "run" in proc.stdout and "train" in proc.stdout and "plugins" in proc.stdout
    assert run_cli("--version").stdout.startswith("reidplug, version")

"""The corpus of bad inputs in tests/data/bad: one clear line, exit code 2, nothing written or lost."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import install_distribution, run_cli

CORPUS = Path(__file__).parent / "data" / "bad"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yml").is_file())

BROKEN = 'raise RuntimeError("this plugin cannot be imported")\n'


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("broken-site")
    return install_distribution(site, "rp-broken", {"rp_broken": BROKEN}, {"broken": "rp_broken"})


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tmp_path, request):
    spec = yaml.safe_load((CORPUS / case / "case.yml").read_text())
    work = tmp_path / case
    shutil.copytree(CORPUS / case, work)
    env = dict(spec.get("env", {}))
    setup = spec.get("setup", "")
    if setup == "broken_plugin":
        env["PYTHONPATH"] = str(request.getfixturevalue("broken_site"))
    elif setup.startswith("prior_run "):
        first = run_cli("run", setup.split()[1], "--quiet", "--no-report", cwd=work)
        assert first.returncode == 0, first.stderr
    if "replace" in spec:  # damage what the setup wrote
        (work / spec["replace"]["path"]).write_text(spec["replace"]["text"])
    if "truncate" in spec:
        with open(work / spec["truncate"]["path"], "r+b") as f:
            f.truncate(spec["truncate"]["size"])
    before = snapshot(work)

    proc = run_cli(*spec["args"], cwd=work, env_extra=env)

    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    # "[reidplug] ..." lines say what a command is doing; they are not errors.
    others = [line for line in lines if not line.startswith(("error: ", "[reidplug] "))]
    assert len(others) == spec.get("warnings", 0) and all(o.startswith("warning: ") for o in others), proc.stderr
    for fragment in spec["expect"]:
        assert fragment in errors[0], errors[0]
    assert snapshot(work) == before, "a bad input changed or added files"

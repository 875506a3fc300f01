"""Shared test setup."""

from __future__ import annotations

import os

import pytest

# Tests must not depend on the user's environment, nor write into the user's cache.
os.environ.pop("REIDPLUG_DISABLE_PLUGINS", None)
if "REIDPLUG_TEST_CACHE" not in os.environ:
    import tempfile

    os.environ["REIDPLUG_TEST_CACHE"] = tempfile.mkdtemp(prefix="reidplug-test-cache-")
os.environ["REIDPLUG_CACHE"] = os.environ["REIDPLUG_TEST_CACHE"]

# A Re-ID setting small enough to train in seconds on a CPU (overrides for load_config).
TINY_REID = [
    "MODEL.BACKBONE.NAME=resnet_tiny", "MODEL.DEVICE=cpu", "INPUT.SIZE_TRAIN=[32, 16]", "INPUT.SIZE_TEST=[32, 16]",
    "INPUT.PADDING.SIZE=2", "DATASETS.NAMES=[SyntheticMarket]", "DATASETS.TESTS=[SyntheticMarket]",
    "DATASETS.SYNTH.IDS=12", "DATASETS.SYNTH.CAMS=3", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16",
    "DATALOADER.NUM_WORKERS=0", "DATALOADER.CACHE_IMAGES=true", "SOLVER.AMP.ENABLED=false",
    "SOLVER.IMS_PER_BATCH=16", "SOLVER.MAX_EPOCH=4", "SOLVER.STEPS=[3]", "SOLVER.WARMUP_ITERS=5",
    "SOLVER.BASE_LR=0.001", "SOLVER.CHECKPOINT_PERIOD=2", "TEST.EVAL_PERIOD=2", "TEST.IMS_PER_BATCH=64",
]


@pytest.fixture(autouse=True)
def _fresh_plugin_manager(monkeypatch):
    """Each test sees a plugin manager built from its own environment."""
    from reidplug.core import manager

    manager.reset_plugin_manager()
    yield
    manager.reset_plugin_manager()


def install_distribution(target, name: str, modules: dict[str, str], entry_points: dict[str, str]):
    """pip-install a tiny real distribution into `target` (for PYTHONPATH); returns `target`."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    src = Path(target).parent / f"src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    eps = "\n".join(f'{k} = "{v}"' for k, v in entry_points.items())
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "1.2.3"

        [tool.setuptools]
        py-modules = {list(modules)!r}

        [project.entry-points.reidplug]
        """) + eps + "\n")
    for mod, code in modules.items():
        (src / f"{mod}.py").write_text(textwrap.dedent(code))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return Path(target)


def run_cli(*args, env_extra=None, cwd=None, timeout=120):
    """Run `python -m reidplug ARGS` in a subprocess; returns CompletedProcess (text)."""
    import subprocess
    import sys

    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "reidplug", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def cli_in_process(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `reidplug ARGS`, run in this process."""
    from reidplug.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err

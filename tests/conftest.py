"""Shared test setup."""

from __future__ import annotations

import os

import pytest

# Tests must not depend on the user's environment.
os.environ.pop("REIDPLUG_DISABLE_PLUGINS", None)


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

"""Wall time of the README's quickstart search, from an empty dataset cache and from a warm one.

    python bench/quickstart_time.py            # both, in a scratch folder
    python bench/quickstart_time.py --runs 2   # each twice

Runs the installed `reidplug run configs/quickstart.yml --fresh` (what `make quickstart` runs) as a
user does: the empty-cache run generates the synthetic set first, the warm run reuses it. Output
goes to a scratch OUTPUT_DIR so that logs/quickstart is left alone. Prints one line per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(cache: Path, out: Path) -> tuple[float, str]:
    env = dict(os.environ, REIDPLUG_CACHE=str(cache))
    reidplug = shutil.which("reidplug") or str(Path(sys.executable).with_name("reidplug"))
    t0 = time.perf_counter()
    done = subprocess.run([reidplug, "run", "configs/quickstart.yml", "--fresh", f"OUTPUT_DIR={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"quickstart failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    best = next((line for line in done.stdout.splitlines() if line.startswith("Best trial")), "")
    return wall, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each kind")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="reidplug-quickstart-"))
    try:
        for i in range(args.runs):
            cache = scratch / f"cache{i}"
            for kind in ("empty cache", "warm cache"):
                wall, best = run_once(cache, scratch / "out")
                print(f"quickstart, {kind}: {wall:6.1f} s wall   {best}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

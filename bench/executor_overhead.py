"""Per-trial overhead of the ray executor against the local one, on the same no-op workload.

    python bench/executor_overhead.py                      # 200 trials, 2 at a time, local Ray with 2 CPUs
    python bench/executor_overhead.py --address auto       # against a running cluster

Two measurements, each repeated (median shown), local and ray taking turns:

- executor alone: a minimal driver keeps CONCURRENCY no-op trials in flight
  through launch -> result -> release, with nothing else going on; this is
  what the executor itself costs per trial.
- through the loop: the same Tuner, searcher, journal and reporters (jsonl, csv)
  with only TUNE.EXECUTOR changed; this is what a user sees.

The trainable (`noop`) does no work. Starting Ray is timed on its own and left
out; starting the workers (processes or actors) is in, as in a real run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def drive(executor_name: str, trials: int, concurrency: int, out: str) -> tuple[float, float]:
    """Seconds until the first CONCURRENCY results (workers starting), and for all trials."""
    from reidplug.core.executor import ErrorEvent, LaunchSpec
    from reidplug.core.manager import plugin_manager
    from reidplug.core.trainable import TrialContext

    cls = plugin_manager().registry("executor").get(executor_name)
    executor = cls(max_concurrent=concurrency, resources={"cpu": 1, "gpu": 0}, experiment_dir=out)
    t0 = time.perf_counter()
    executor.start()
    launched = done = 0
    warm = None
    try:
        while done < trials:
            while executor.free_slots() > 0 and launched < trials:
                launched += 1
                context = TrialContext(trial_id=launched, trial_dir=os.path.join(out, f"trial_{launched:04d}"),
                                       experiment_dir=out, max_steps=1)
                executor.launch(LaunchSpec(launched, "noop", {"x": 0.5}, context))
            for event in executor.poll(timeout=1.0):
                assert not isinstance(event, ErrorEvent), event
                executor.release(event.trial_id)
                done += 1
                if done == concurrency:
                    warm = time.perf_counter() - t0
        return warm, time.perf_counter() - t0
    finally:
        executor.shutdown()


def through_loop(executor: str, trials: int, concurrency: int, out: str) -> tuple[None, float]:
    """Seconds for `trials` no-op trials through the Tuner, workers' start included."""
    from reidplug.core.tuner import Tuner

    cfg = {
        "OUTPUT_DIR": out,
        "TUNE": {
            "NAME": f"overhead-{executor}", "TRAINABLE": "noop", "EXECUTOR": executor, "NUM_TRIALS": trials,
            "MAX_CONCURRENT": concurrency, "MAX_STEPS": 1, "SEARCHER": "random", "REPORTERS": ["jsonl", "csv"],
            "SPACE": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": [1, 2, 3]}},
        },
    }
    t0 = time.perf_counter()
    summary = Tuner(cfg, fresh=True).run()
    assert summary["status"] == {"TERMINATED": trials}, summary["status"]
    return None, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--address", default="local", help="TUNE.RAY.ADDRESS: local, auto or ray://HOST:PORT")
    args = ap.parse_args()

    import ray

    from reidplug.plugins.executors.ray import connect

    t0 = time.perf_counter()
    connect(args.address, num_cpus=args.concurrency)
    ray_start = time.perf_counter() - t0
    times: dict = {}
    try:
        for _ in range(args.repeat):
            for name in ("local", "ray"):
                for kind, fn in (("executor alone", drive), ("through the loop", through_loop)):
                    out = tempfile.mkdtemp(prefix="reidplug-executors-")
                    try:
                        times.setdefault((kind, name), []).append(fn(name, args.trials, args.concurrency, out))
                    finally:
                        shutil.rmtree(out, ignore_errors=True)
    finally:
        ray.shutdown()

    n, c = args.trials, args.concurrency
    print(f"\nNo-op trials, {n} per run, {c} at a time, one result each; median of {args.repeat} runs "
          f"(python {sys.version.split()[0]}, ray {ray.__version__}, {os.cpu_count()} CPUs, Ray at {args.address!r})")
    print(f"{'measurement':34s} {'local':>9s} {'ray':>9s} {'ray/local':>9s}")
    rows = []
    for kind in ("executor alone", "through the loop"):
        med = {name: (statistics.median(w for w, _ in times[kind, name] if w is not None)
                      if kind == "executor alone" else None,
                      statistics.median(t for _, t in times[kind, name])) for name in ("local", "ray")}
        rows.append((f"{kind}: ms/trial, all {n}", {k: 1000 * t / n for k, (_, t) in med.items()}))
        if kind == "executor alone":
            rows.append((f"{kind}: s to first {c} results", {k: w for k, (w, _) in med.items()}))
            rows.append((f"{kind}: ms/trial after those",
                         {k: 1000 * (t - w) / (n - c) for k, (w, t) in med.items()}))
    for label, v in rows:
        print(f"{label:34s} {v['local']:9.2f} {v['ray']:9.2f} {v['ray'] / v['local']:8.2f}x")
    print(f"starting Ray, not counted above: {ray_start:.2f} s")


if __name__ == "__main__":
    main()

"""Decision latency of each scheduler over 10,000 trials: scheduler.on_result alone, and experiment.tell.

    python bench/scheduler_latency.py            # 10,000 trials per scheduler
    python bench/scheduler_latency.py --quick    # 1,000 trials

Trials run in this process through the ask/tell API, 8 at a time, on a toy learning curve
(score = plateau(x) * (1 - 0.5**step), 9 steps). The experiment folder, its SQLite journal
and the checkpoints live on /dev/shm (tmpfs) when it exists. `on_result` is the decision
itself (the 1 ms target applies to it); `tell` adds journaling the result, the decision
and the pickled searcher/scheduler state, and the searcher's own update (BOHB's model).
PBT's on_result includes the exploit's checkpoint copy when there is one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from schedulers_multifidelity import drive, scratch_dir  # noqa: E402

SCHEDULERS = {
    "asha (stop)": {"SCHEDULER": "asha", "ASHA": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3}},
    "asha (promotion)": {"SCHEDULER": "asha", "ASHA": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3, "TYPE": "promotion"}},
    "hyperband": {"SCHEDULER": "hyperband", "HYPERBAND": {"ETA": 3}},
    "bohb": {"SCHEDULER": "bohb", "BOHB": {"ETA": 3}},
    "bohb_async": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"REDUCTION_FACTOR": 3}},
    "pbt": {"SCHEDULER": "pbt", "PBT": {"PERTURBATION_INTERVAL": 3}},
    "pb2": {"SCHEDULER": "pb2", "PB2": {"PERTURBATION_INTERVAL": 3}},
    "fifo (reference)": {"SCHEDULER": "fifo"},
}


class Toy:
    space = {"x": {"uniform": [0.0, 1.0]}, "y": {"loguniform": [1e-4, 1e-1]}, "c": {"choice": ["a", "b", "c"]}}

    def init(self, params):
        return {"t": 0}

    def step(self, params, state, rng):
        t = state["t"] + 1
        plateau = 1 - (params["x"] - 0.3) ** 2 - 0.1 * (params["c"] != "b")
        return plateau * (1 - 0.5**t) + 0.01 * float(rng.normal()), {"t": t}


def measure(name: str, trials: int) -> dict:
    from reidplug.core.experiment import Experiment

    out = scratch_dir()
    tune = {"NAME": "latency", "TRAINABLE": "noop", "NUM_TRIALS": trials, "MAX_STEPS": 9, "SEED": 0,
            "REPORTERS": [], "CHECKPOINT_FREQ": 0, "SPACE": Toy.space, **SCHEDULERS[name]}
    exp = Experiment({"OUTPUT_DIR": out, "TUNE": tune})
    decide, tells, asks, exploit_times, plain_times = [], [], [], [], []
    sched = exp.scheduler
    inner = sched.on_result

    def timed_on_result(trial, result):
        t0 = time.perf_counter()
        decision = inner(trial, result)
        elapsed = time.perf_counter() - t0
        decide.append(elapsed)
        if str((sched.last_info or {}).get("reason", "")).startswith("exploit"):
            exploit_times.append(elapsed)  # includes copying the donor's checkpoint
        else:
            plain_times.append(elapsed)
        return decision

    sched.on_result = timed_on_result
    tell, ask = exp.tell, exp.ask

    def timed_tell(*a, **k):
        t0 = time.perf_counter()
        decision = tell(*a, **k)
        tells.append(time.perf_counter() - t0)
        return decision

    def timed_ask():
        t0 = time.perf_counter()
        trial = ask()
        asks.append(time.perf_counter() - t0)
        return trial

    exp.tell, exp.ask = timed_tell, timed_ask
    t0 = time.perf_counter()
    try:
        drive(exp, Toy(), 0, 10**9, concurrency=8)
        wall = time.perf_counter() - t0
        created = len(exp.trials)
        done = sum(t.status.done for t in exp.trials.values())
        exploits = len(exp.journal.events("exploit"))
    finally:
        exp.close()
        shutil.rmtree(out, ignore_errors=True)
    ms = lambda xs: 1000 * np.array(xs)  # noqa: E731
    d, t, a = ms(decide), ms(tells), ms(asks)
    e = ms(exploit_times)
    plain = ms(plain_times)
    return {"name": name, "trials": created, "done": done, "results": len(d), "wall_s": wall, "exploits": exploits,
            "exploit": (e.mean(), np.percentile(e, 50), np.percentile(e, 99)) if len(e) else None,
            "plain_p99": np.percentile(plain, 99),
            "on_result": (d.mean(), np.percentile(d, 50), np.percentile(d, 99), d.max()),
            "tell": (t.mean(), np.percentile(t, 50), np.percentile(t, 99), t.max()),
            "ask": (a.mean(), np.percentile(a, 99))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 trials")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated scheduler names")
    args = parser.parse_args(argv)
    trials = args.trials or (1000 if args.quick else 10000)
    names = [n for n in SCHEDULERS if not args.only or n in args.only.split(",")]
    print(f"{trials} trials per scheduler, 8 at a time, 9 steps max; journal on {scratch_base()}")
    print(f"{'scheduler':18s}{'results':>9s}{'on_result ms: mean':>20s}{'p50':>7s}{'p99':>7s}{'max':>8s}"
          f"{'tell ms: mean':>15s}{'p50':>7s}{'p99':>7s}{'ask ms: mean':>14s}{'p99':>7s}{'wall s':>8s}")
    for name in names:
        r = measure(name, trials)
        o, t, a = r["on_result"], r["tell"], r["ask"]
        print(f"{name:18s}{r['results']:9d}{o[0]:20.3f}{o[1]:7.3f}{o[2]:7.3f}{o[3]:8.2f}"
              f"{t[0]:15.3f}{t[1]:7.3f}{t[2]:7.3f}{a[0]:14.3f}{a[1]:7.2f}{r['wall_s']:8.1f}"
              + (f"   ({r['exploits']} exploits)" if r["exploits"] else ""), flush=True)
        if r["exploit"]:
            x = r["exploit"]
            print(f"{'  of which exploits':18s}{r['exploits']:9d}{x[0]:20.3f}{x[1]:7.3f}{x[2]:7.3f}"
                  f"   (checkpoint copy included; the other decisions: p99 {r['plain_p99']:.3f} ms)")
        assert r["done"] == r["trials"] == trials, r


def scratch_base() -> str:
    import os

    return "/dev/shm (tmpfs)" if os.path.isdir("/dev/shm") else "the temp folder (disk)"


if __name__ == "__main__":
    main()

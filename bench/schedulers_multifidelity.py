"""Multi-fidelity schedulers on simulated objectives: regret against cumulative budget.

    python bench/schedulers_multifidelity.py            # 20 seeds, 50 max budgets per run
    python bench/schedulers_multifidelity.py --quick    # 3 seeds, 8 max budgets (smoke run)

Methods (TUNE.SCHEDULER + TUNE.SEARCHER): BOHB, BOHB on ASHA (bohb_async), Hyperband with
random sampling, ASHA (Ray's stopping rule), random search and hyperopt's TPE, both under
FIFO at the maximum budget. Every method runs through the Experiment's ask/tell API in
this process, one trial at a time; pausing schedulers get real checkpoint folders (on
/dev/shm when it exists) holding the simulated training state. The budget is counted
exactly: one step is one unit, and a resumed trial goes on from its checkpoint.

Problems (budgets 1..81 steps, eta 3; hpbandster's 9..729 samples with 9 samples a step):
- counting ones: 8 binary choices and 8 continuous x_j in [0, 1]. After t steps the score
  is sum(choices) + sum_j (mean of 9t Bernoulli(x_j) draws); the true value replaces the
  means by x_j, the optimum is 16 and the regret is 16 - true value.
- Hartmann-6 with fidelity: after t of T = 81 steps the score is -(f(x) + (1 - t/T) d(x) + e_t)
  with f the Hartmann-6 function (minimum -3.32237), d(x) = 0.25 (f(1 - x) - f(x)) a bias
  that pulls low budgets towards the mirrored landscape and vanishes at full budget, and
  e_t the mean of t draws of N(0, 0.5^2) noise. The regret is f(x) - f*.

The incumbent is hpbandster's: the best observed score among results at the largest step
reached so far; its regret uses the true value. Prints the median and interquartile range
of the regret at several budgets (in units of the maximum budget) and saves a plot to
docs/img/schedulers_multifidelity.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

T = 81  # max budget in steps
STUDY_TAG = os.environ.get("REIDPLUG_BENCH_STUDY_TAG", "")  # another name for Optuna's studies: another bracket draw

_PLAIN = {"EXTRAPOLATE": False, "AGREEMENT": False, "ADAPTIVE_BANDWIDTH": False, "BALANCE_BUDGETS": False}
METHODS = {
    "BOHB": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3}},
    # The joint model without what it learns from the curves, and with one piece of it at a time.
    "BOHB (plain joint)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, **_PLAIN}},
    "BOHB (extrapolate)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, **_PLAIN, "EXTRAPOLATE": True}},
    "BOHB (agreement)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, **_PLAIN, "AGREEMENT": True}},
    "BOHB (adaptive bandwidth)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, **_PLAIN,
                                                                 "ADAPTIVE_BANDWIDTH": True}},
    "BOHB (balanced budgets)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, **_PLAIN,
                                                               "BALANCE_BUDGETS": True}},
    "BOHB (unbalanced)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, "BALANCE_BUDGETS": False}},
    "BOHB (hpbandster)": {"SCHEDULER": "bohb", "BOHB": {"MIN_BUDGET": 1, "ETA": 3, "MODEL": "hpbandster"}},
    "BOHB (ASHA)": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3}},
    "BOHB (ASHA) whole rung": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3,
                                                                          "WHOLE_RUNG": True, "QUOTA": False}},
    "BOHB (ASHA) no quota": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3,
                                                                        "QUOTA": False}},
    "BOHB (ASHA) promotion": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3,
                                                                         "COHORTS": False}},
    "BOHB (ASHA) window 9": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3,
                                                                        "TYPE": "stop", "WINDOW": 9}},
    "BOHB (ASHA) stop": {"SCHEDULER": "bohb_async", "BOHB_ASYNC": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3,
                                                                    "TYPE": "stop", "WINDOW": 0}},
    "Hyperband": {"SCHEDULER": "hyperband", "SEARCHER": "random", "HYPERBAND": {"MIN_BUDGET": 1, "ETA": 3}},
    "ASHA": {"SCHEDULER": "asha", "SEARCHER": "random", "ASHA": {"GRACE_PERIOD": 1, "REDUCTION_FACTOR": 3}},
    "Random": {"SCHEDULER": "fifo", "SEARCHER": "random"},
    "TPE (hyperopt)": {"SCHEDULER": "fifo", "SEARCHER": "hyperopt"},
    # Reference runs of a peer (from `make bench-deps`), not reidplug configurations.
    "Optuna TPE+Hyperband": {"SEARCHER": "optuna"},
    "Optuna TPE+SHA": {"SEARCHER": "optuna"},
}


# ---------------------------------------------------------------------- problems

class CountingOnes:
    name = "counting_ones"
    space = {**{f"c{i}": {"choice": [0, 1]} for i in range(8)}, **{f"x{i}": {"uniform": [0.0, 1.0]} for i in range(8)}}

    def init(self, params):
        return {"sums": [0] * 8, "n": 0}

    def step(self, params, state, rng):
        draws = rng.random((9, 8)) < np.array([params[f"x{i}"] for i in range(8)])
        sums = [s + int(d) for s, d in zip(state["sums"], draws.sum(axis=0))]
        n = state["n"] + 9
        state = {"sums": sums, "n": n}
        score = sum(params[f"c{i}"] for i in range(8)) + sum(s / n for s in sums)
        return score, state

    def regret(self, params):
        return 16.0 - sum(params[f"c{i}"] for i in range(8)) - sum(params[f"x{i}"] for i in range(8))


_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                 [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN_MIN = -3.32237


def hartmann6(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


class Hartmann:
    name = "hartmann6"
    space = {f"x{i}": {"uniform": [0.0, 1.0]} for i in range(6)}

    def init(self, params):
        return {"noise": 0.0, "t": 0}

    def step(self, params, state, rng):
        x = np.array([params[f"x{i}"] for i in range(6)])
        t = state["t"] + 1
        noise = state["noise"] + float(rng.normal(0.0, 0.5))
        f = hartmann6(x)
        bias = 0.25 * (hartmann6(1.0 - x) - f)
        value = f + (1 - t / T) * bias + noise / t
        return -value, {"noise": noise, "t": t}

    def regret(self, params):
        return hartmann6([params[f"x{i}"] for i in range(6)]) - HARTMANN_MIN


_OPT_OFFSET = {"sgd": 0.4, "adam": 0.0, "rmsprop": 0.2}
_BEST_LOG_LR = {"sgd": -1.5, "adam": -3.0, "rmsprop": -2.5}
_ACT_OFFSET = {"relu": 0.1, "gelu": 0.0, "tanh": 0.3, "sigmoid": 0.6}


class Mixed:
    """bench/searchers.py's mixed space (choices, a log rate, integers) with a fidelity.

    After t steps the score is -(f(p) + (1 - t/T) b(p) + e_t): f has its minimum 0 at one
    point; b(p) = 0.3 (4 - depth) / 4 + 0.2 [opt == sgd] makes shallow models and SGD look
    better early (its sign flips the ranking of depths at low budgets); e_t is the mean of
    t draws of N(0, 0.3**2).
    """

    name = "mixed"
    space = {"opt": {"choice": ["sgd", "adam", "rmsprop"]}, "act": {"choice": ["relu", "gelu", "tanh", "sigmoid"]},
             "lr": {"loguniform": [1e-5, 1.0]}, "x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]},
             "depth": {"randint": [1, 9]}, "width": {"quniform": [16, 256, 16]}}

    @staticmethod
    def f(p) -> float:
        return (_OPT_OFFSET[p["opt"]] + _ACT_OFFSET[p["act"]]
                + ((math.log10(p["lr"]) - _BEST_LOG_LR[p["opt"]]) / 2) ** 2
                + 1 - math.exp(-((p["x"] - 0.7) ** 2 + (p["y"] - 0.2) ** 2) / 0.05)
                + 0.05 * (p["depth"] - 4) ** 2 + ((p["width"] - 96) / 160) ** 2)

    def init(self, params):
        return {"noise": 0.0, "t": 0}

    def step(self, params, state, rng):
        t = state["t"] + 1
        noise = state["noise"] + float(rng.normal(0.0, 0.3))
        bias = 0.3 * (4 - params["depth"]) / 4 + 0.2 * (params["opt"] == "sgd")
        return -(self.f(params) - (1 - t / T) * bias + noise / t), {"noise": noise, "t": t}

    def regret(self, params):
        return self.f(params)


class LearningCurves:
    """A learning-curve surrogate: power-law curves that cross.

    acc(t) = a(p) - (a(p) - 0.1) * (1 + t)**(-c(p)) + N(0, 0.005**2). The plateau a(p) is
    best (0.95) at lr = 10**-2.5, weight decay 10**-4, batch 64, dropout 0.2; the speed c(p)
    grows with the learning rate and the batch, so fast learners lead early. The regret is
    the noise-free accuracy at the maximum budget T below the best one (a grid optimum):
    what a search observes at its largest budget, unlike the plateau, which no curve
    reaches within T steps (fast learners still lead there).
    """

    name = "learning_curves"
    space = {"lr": {"loguniform": [1e-5, 1.0]}, "wd": {"loguniform": [1e-7, 1e-1]},
             "batch": {"choice": [16, 32, 64, 128, 256]}, "dropout": {"uniform": [0.0, 0.6]}}

    @staticmethod
    def plateau(p) -> float:
        return (0.95 - 0.04 * (math.log10(p["lr"]) + 2.5) ** 2 - 0.01 * (math.log10(p["wd"]) + 4) ** 2
                - 0.03 * abs(math.log2(p["batch"] / 64)) - 0.3 * (p["dropout"] - 0.2) ** 2)

    @staticmethod
    def speed(p) -> float:
        return 0.15 * math.exp(0.4 * (math.log10(p["lr"]) + 2.5)) * (p["batch"] / 64) ** 0.3

    def init(self, params):
        return {"t": 0}

    def step(self, params, state, rng):
        t = state["t"] + 1
        a = self.plateau(params)
        acc = a - (a - 0.1) * (1 + t) ** (-self.speed(params))
        return acc + float(rng.normal(0.0, 0.005)), {"t": t}

    def final(self, p) -> float:
        a, c = self.plateau(p), self.speed(p)
        return a - (a - 0.1) * (1 + T) ** (-c)

    @functools.cached_property
    def best_final(self) -> float:
        # Weight decay and dropout move only the plateau (best at 1e-4 and 0.2); lr and batch both.
        grid = [{"lr": 10 ** e, "wd": 1e-4, "batch": b, "dropout": 0.2}
                for e in np.linspace(-5, 0, 5001) for b in self.space["batch"]["choice"]]
        return max(self.final(p) for p in grid)

    def regret(self, params):
        return self.best_final - self.final(params)


PROBLEMS = {"counting_ones": CountingOnes(), "hartmann6": Hartmann(), "mixed": Mixed(),
            "learning_curves": LearningCurves()}


# ---------------------------------------------------------------------- driving an experiment

def _save(exp, trial, step, state) -> str:
    from reidplug.core import checkpoints

    path = exp.checkpoint_path(trial, step)
    staging = checkpoints.staging_dir(path)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "state.json").write_text(json.dumps(state))
    checkpoints.finalize(staging, path)
    return path


def drive(exp, problem, seed: int, max_steps_total: int, concurrency: int = 1, on_result=None,
          clock: dict | None = None) -> int:
    """Run trials in this process until `max_steps_total` steps are spent; returns the steps spent.

    Trial state lives in checkpoint folders, so resumes and PBT exploits restore exactly what
    was saved. `on_result(trial, step, score, spent)` is called after every result. Every
    running trial takes one step per round, as `concurrency` workers whose steps all take
    the same time; `clock["rounds"]` counts the rounds (simulated wall time).
    """
    from reidplug.core.trial import Decision, TrialStatus

    # ask() hands out at most TUNE.MAX_CONCURRENT running trials: `concurrency` workers need as many.
    exp.cfg.TUNE.MAX_CONCURRENT = max(exp.cfg.TUNE.MAX_CONCURRENT, concurrency)
    running: dict[int, list] = {}
    spent = 0
    clock = clock if clock is not None else {}
    clock["rounds"] = 0
    while spent < max_steps_total:
        clock["rounds"] += 1
        while len(running) < concurrency:
            trial = exp.ask()
            if trial is None:
                break
            if trial.restore_from:
                state = json.loads((Path(trial.restore_from) / "state.json").read_text())
                step = trial.checkpoint_step
            else:
                state, step = problem.init(trial.params), 0
            running[trial.id] = [trial, state, step]
        if not running:
            break
        for tid in list(running):
            trial, state, step = running[tid]
            step += 1
            rng = np.random.default_rng([seed, trial.id, step, len(trial.results)])
            score, state = problem.step(trial.params, state, rng)
            running[tid][1:] = [state, step]
            spent += 1
            path = _save(exp, trial, step, state) if exp.wants_checkpoint(trial, step) else None
            decision = exp.tell(trial, {"score": score}, checkpoint=path, step=step)
            if on_result is not None:
                on_result(trial, step, score, spent)
            if trial.status == TrialStatus.ERROR or decision == Decision.STOP:
                del running[tid]
            elif decision == Decision.PAUSE:
                if trial.status != TrialStatus.PAUSED:
                    exp.mark_paused(trial, _save(exp, trial, step, state))
                del running[tid]
            if spent >= max_steps_total:
                break
    return spent


def scratch_dir() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="reidplug-bench-", dir=base)


def run_one(args) -> dict:
    method, problem_name, seed, units, concurrency = args
    from reidplug.core.experiment import Experiment

    problem = PROBLEMS[problem_name]
    if method.startswith("Optuna"):
        if concurrency != 1:
            raise SystemExit("Optuna's reference runs are one trial at a time (--concurrency 1)")
        return run_optuna(method, problem, seed, units)
    out = scratch_dir()
    tune = {"NAME": "run", "TRAINABLE": "noop", "NUM_TRIALS": 100000, "MAX_STEPS": T, "SEED": seed,
            "REPORTERS": [], "CHECKPOINT_FREQ": 0, "SPACE": problem.space, **METHODS[method]}
    exp = Experiment({"OUTPUT_DIR": out, "TUNE": tune})
    curve: list[tuple[float, float]] = []
    wall: list[tuple[float, float]] = []  # (rounds / T, regret): time in maximum-budget trial lengths
    inc = {"step": 0, "score": -math.inf, "regret": math.inf}
    clock: dict = {}

    def on_result(trial, step, score, spent):
        if step > inc["step"] or (step == inc["step"] and score > inc["score"]):
            inc.update(step=step, score=score, regret=problem.regret(trial.params))
        curve.append((spent / T, inc["regret"]))
        wall.append((clock["rounds"] / T, inc["regret"]))

    t0 = time.perf_counter()
    try:
        drive(exp, problem, seed, units * T, concurrency=concurrency, on_result=on_result, clock=clock)
    finally:
        exp.close()
        shutil.rmtree(out, ignore_errors=True)
    return {"method": method, "problem": problem_name, "seed": seed, "curve": curve, "wall": wall,
            "seconds": time.perf_counter() - t0, "trials": len(exp.trials)}


def run_optuna(method, problem, seed, units) -> dict:
    """Optuna's TPE with a pruner on the same problem, one trial at a time, the same step accounting."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if method == "Optuna TPE+Hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=T, reduction_factor=3)
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    # HyperbandPruner picks a trial's bracket from a hash of the study's name and the trial's
    # number; the default name is random, and that alone moved its 20-seed medians by half.
    name = f"{problem.name}-{seed}{STUDY_TAG}"
    study = optuna.create_study(study_name=name, direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner)
    dists = {}
    for key, spec in problem.space.items():
        (kind, a), = spec.items()
        if kind == "choice":
            dists[key] = optuna.distributions.CategoricalDistribution(a)
        elif kind == "randint":
            dists[key] = optuna.distributions.IntDistribution(a[0], a[1] - 1)
        elif kind == "quniform":
            dists[key] = optuna.distributions.IntDistribution(a[0], a[1], step=a[2])
        else:
            dists[key] = optuna.distributions.FloatDistribution(a[0], a[1], log=kind == "loguniform")
    curve, spent = [], 0
    inc = {"step": 0, "score": -math.inf, "regret": math.inf}
    t0 = time.perf_counter()
    n = 0
    while spent < units * T:
        trial = study.ask(dists)
        n += 1
        params = dict(trial.params)
        state = problem.init(params)
        pruned = False
        for step in range(1, T + 1):
            rng = np.random.default_rng([seed, trial.number, step, step - 1])
            score, state = problem.step(params, state, rng)
            spent += 1
            if step > inc["step"] or (step == inc["step"] and score > inc["score"]):
                inc.update(step=step, score=score, regret=problem.regret(params))
            curve.append((spent / T, inc["regret"]))
            trial.report(score, step)
            if spent >= units * T:
                break
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, score)
    return {"method": method, "problem": problem.name, "seed": seed, "curve": curve,
            "seconds": time.perf_counter() - t0, "trials": n}


def regret_at(curve, grid) -> np.ndarray:
    budgets = np.array([b for b, _ in curve])
    regrets = np.array([r for _, r in curve])
    idx = np.searchsorted(budgets, grid, side="right") - 1
    return np.where(idx >= 0, regrets[np.clip(idx, 0, None)], np.nan)


# ---------------------------------------------------------------------- main

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 8 max budgets")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=float, default=None, help="max budgets per run")
    parser.add_argument("--workers", type=int, default=2, help="processes running the seeds")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="trials at a time within a run (simulated workers; adds time-to-regret figures)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--problems", default=None, help="comma-separated (default: all)")
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs" / "img" /
                                              "schedulers_multifidelity.png"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 20)
    units = args.budget or (8 if args.quick else 50)
    methods = [m for m in args.methods.split(",") if m]
    from reidplug.core.manager import plugin_manager

    known = {e.name for e in plugin_manager().registry("searcher")}
    try:
        import optuna  # noqa: F401

        known.add("optuna")
    except ImportError:
        pass
    methods = [m for m in methods if METHODS[m].get("SEARCHER", "random") in known]
    problems = args.problems.split(",") if args.problems else list(PROBLEMS)
    for p in list(PROBLEMS):
        if p not in problems:
            del PROBLEMS[p]
    tasks = [(m, p, s, units, args.concurrency) for p in PROBLEMS for m in methods for s in range(seeds)]
    print(f"{len(methods)} methods x {len(PROBLEMS)} problems x {seeds} seeds, {units:g} max budgets "
          f"({units * T:g} steps) per run, {args.concurrency} trial(s) at a time, {args.workers} processes",
          flush=True)
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        runs = pool.map(run_one, tasks, chunksize=1)
    print(f"done in {time.perf_counter() - t0:.0f} s\n")
    marks = [units / 10, units / 4, units / 2, units]
    grid = np.geomspace(1.0, units, 80)
    summary = {}
    for p in PROBLEMS:
        print(f"{p}: median regret [IQR] at budget (units of the max budget)")
        print(f"  {'method':24s}" + "".join(f"{m:>30g}" for m in marks) + f"{'s/run':>8s}{'trials':>8s}")
        for m in methods:
            rs = [r for r in runs if r["problem"] == p and r["method"] == m]
            at = np.array([regret_at(r["curve"], np.array(marks)) for r in rs])
            cells = []
            for j in range(len(marks)):
                q1, med, q3 = np.nanpercentile(at[:, j], [25, 50, 75])
                cells.append(f"{med:.4g} [{q1:.4g},{q3:.4g}]")
            secs = np.mean([r["seconds"] for r in rs])
            trials = np.median([r["trials"] for r in rs])
            print(f"  {m:24s}" + "".join(f"{c:>30s}" for c in cells) + f"{secs:8.1f}{trials:8.0f}")
            curves = np.array([regret_at(r["curve"], grid) for r in rs])
            summary[(p, m)] = np.nanpercentile(curves, [25, 50, 75], axis=0)
        print()
        if args.concurrency > 1:
            wall_report(runs, p, methods, args.concurrency)
    for p in PROBLEMS:
        if ("BOHB" in methods) and ("Hyperband" in methods):
            b, h = summary[(p, "BOHB")][1][-1], summary[(p, "Hyperband")][1][-1]
            print(f"{p}: final median regret BOHB {b:.4f} vs Hyperband {h:.4f} -> "
                  f"{'BOHB better' if b < h else 'BOHB NOT better'}")
    if args.plot:
        plot(summary, methods, grid, args.plot, seeds, units)
        print(f"plot: {args.plot}")


def wall_report(runs, problem, methods, concurrency) -> None:
    """Median simulated wall time (in maximum-budget trial lengths) to reach each regret level."""
    levels = [2.0, 1.0, 0.7, 0.5]
    print(f"{problem}: {concurrency} workers, median wall time to reach a regret [runs that reached it]")
    print(f"  {'method':24s}" + "".join(f"{'<= ' + format(v, 'g'):>16s}" for v in levels) + f"{'end':>8s}")
    for m in methods:
        rs = [r for r in runs if r["problem"] == problem and r["method"] == m]
        cells = []
        for v in levels:
            times = [next((w for w, reg in r["wall"] if reg <= v), math.inf) for r in rs]
            reached = sum(math.isfinite(t) for t in times)
            cells.append(f"{np.median(times):.2f} [{reached}/{len(rs)}]")
        end = np.median([r["wall"][-1][0] for r in rs])
        print(f"  {m:24s}" + "".join(f"{c:>16s}" for c in cells) + f"{end:8.1f}")
    print()


def plot(summary, methods, grid, path, seeds, units):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(5.5 * len(PROBLEMS), 4.5), squeeze=False)
    axes = axes[0]
    for ax, p in zip(axes, PROBLEMS):
        for m in methods:
            q1, med, q3 = summary[(p, m)]
            ax.plot(grid, med, label=m)
            ax.fill_between(grid, q1, q3, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cumulative budget (units of the max budget)")
        ax.set_ylabel("simple regret")
        ax.set_title(f"{p}: median and IQR over {seeds} seeds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

"""PBT: explore, quantiles, exploit through checkpoint copies, taking turns, synchronous rounds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from optional import need
from pbt_trainables import Curve, NoisyQuadratic, digest, drive, save_checkpoint

from reidplug.core.errors import ConfigError
from reidplug.core.experiment import Experiment
from reidplug.core.hookspecs import hookimpl
from reidplug.core.trial import Decision, TrialStatus
from reidplug.core.tuner import Tuner

SPACE = {"x": {"uniform": [0.0, 1.0]}, "lr": {"loguniform": [1e-3, 1e-1]}, "bs": {"choice": [16, 32, 64, 128]},
         "n": {"randint": [1, 5]}}


def make_exp(tmp_path, name="exp", pbt=None, **tune):
    base = {"NAME": name, "TRAINABLE": "noop", "NUM_TRIALS": 4, "MAX_STEPS": 8, "REPORTERS": [], "SEED": 1,
            "CHECKPOINT_FREQ": 0, "SCHEDULER": "pbt", "PBT": pbt or {}, "SPACE": SPACE}
    base.update(tune)
    return Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": base})


def lineage(exp):
    path = exp.dir / "pbt_lineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_explore_clips_to_the_domain_and_moves_choices_to_neighbours(tmp_path):
    exp = make_exp(tmp_path, pbt={"PERTURBATION_FACTORS": [50.0, 0.001], "RESAMPLE_PROBABILITY": 0.0,
                                  "EXPLORE": "factors"})
    sched = exp.scheduler
    params = {"x": 0.5, "lr": 0.01, "bs": 32, "n": 3}
    seen = {"x": set(), "lr": set(), "bs": set(), "n": set()}
    for _ in range(200):
        new = sched.explore(params)
        assert exp.space.contains(new), new
        for k in seen:
            seen[k].add(new[k])
    # Factors that leave the domain land on its bounds; a choice moves one step either way.
    assert sorted(seen["x"]) == pytest.approx([0.0005, 1.0]) and sorted(seen["lr"]) == pytest.approx([0.001, 0.1])
    assert seen["bs"] == {16, 64} and seen["n"] == {4, 1}
    edge = sched.explore({"x": 1.0, "lr": 0.1, "bs": 128, "n": 4})
    assert edge["bs"] in (64, 128)
    sched.resample_probability = 1.0
    resampled = [sched.explore(params) for _ in range(200)]
    assert all(exp.space.contains(p) for p in resampled)
    assert len({p["x"] for p in resampled}) > 150
    exp.close()


def test_unit_explore_steps_in_the_domains_coordinates_and_reflects_at_the_bounds(tmp_path):
    exp = make_exp(tmp_path, pbt={"RESAMPLE_PROBABILITY": 0.0, "EXPLORE_SCALE": 0.5})
    sched = exp.scheduler
    lr = exp.space.domains["lr"]
    edge = {"x": 1.0, "lr": 0.1, "bs": 32, "n": 3}
    values = [sched.explore(edge) for _ in range(400)]
    assert all(exp.space.contains(p) for p in values)
    # Reflected, not clipped: from the upper bound nothing lands on it, and the steps are
    # in log coordinates for a log domain (about as many values below 0.01 as from x's 1.0).
    assert not any(p["x"] == 1.0 for p in values) and not any(p["lr"] == pytest.approx(0.1) for p in values)
    below = np.mean([lr.to_unit(p["lr"]) < 0.5 for p in values])
    assert 0.2 < below < 0.5
    assert np.mean([p["x"] < 0.5 for p in values]) == pytest.approx(below, abs=0.1)
    sched.explore_scale = 0.01
    near = [sched.explore({"x": 0.5, "lr": 0.01, "bs": 32, "n": 3}) for _ in range(50)]
    assert all(abs(lr.to_unit(p["lr"]) - 0.5) < 0.05 and abs(p["x"] - 0.5) < 0.05 for p in near)
    exp.close()


def test_ttest_exploit_copies_only_a_clearly_better_donor(tmp_path):
    exp = make_exp(tmp_path, pbt={"EXPLOIT": "ttest", "PERTURBATION_INTERVAL": 4})
    sched = exp.scheduler
    sched.recent = {1: [0.50, 0.52, 0.48, 0.51], 2: [0.51, 0.49, 0.53, 0.50], 3: [0.90, 0.91, 0.89, 0.92]}
    assert not sched._worth_copying(1, 2)  # within the noise
    assert sched._worth_copying(1, 3)
    assert sched._smoothed(4, 1.0) == 1.0 and sched.recent[4] == [1.0]  # the window is the interval
    exp.close()


def test_smoothing_ranks_by_the_mean_of_recent_scores(tmp_path):
    exp = make_exp(tmp_path, pbt={"SMOOTHING": 3})
    sched = exp.scheduler
    assert [sched._smoothed(1, v) for v in (1.0, 2.0, 3.0, 10.0)] == [1.0, 1.5, 2.0, 5.0]
    with pytest.raises(ConfigError, match="SMOOTHING"):
        make_exp(tmp_path, name="b", pbt={"SMOOTHING": 0})
    with pytest.raises(ConfigError, match="EXPLORE"):
        make_exp(tmp_path, name="c", pbt={"EXPLORE": "random"})
    exp.close()


def test_quantile_size_rule(tmp_path):
    exp = make_exp(tmp_path)
    sched = exp.scheduler
    expected = {1: 0, 2: 1, 3: 1, 4: 1, 5: 2, 8: 2, 9: 3}  # ceil(n / 4), at most n // 2
    for n, k in expected.items():
        sched.scores, sched._ranked = {}, []
        for tid in range(n):
            sched._set_score(tid, float(tid))
        bottom, top = sched.quantiles()
        assert (len(bottom), len(top)) == (k, k)
        assert bottom == list(range(k)) and top == list(range(n - k, n))
    sched.quantile_fraction = 0.5
    sched.scores, sched._ranked = {}, []
    for tid in range(3):
        sched._set_score(tid, float(tid))
    assert sched.quantiles() == ([0], [2])  # ceil(1.5) = 2 > 3 / 2: capped at floor(3 / 2)
    exp.close()


def test_async_exploit_copies_the_donor_and_the_recipient_restarts_from_it(tmp_path):
    exp = make_exp(tmp_path, pbt={"PERTURBATION_INTERVAL": 2, "QUANTILE_FRACTION": 0.5},
                   SPACE={"x": {"uniform": [0.0, 1.0]}})
    log = drive(exp, Curve, concurrency=4)
    entries = lineage(exp)
    assert entries, "nobody was exploited"
    for e in entries:
        assert e["step"] == e["donor_step"] and e["step"] % 2 == 0
        assert e["donor_score"] > e["recipient_score"]
        assert 0.0 <= e["new_params"]["x"] <= 1.0
        copy = exp.dir / f"trial_{e['trial_id']:04d}" / "checkpoints" / f"step_{e['step']:05d}_from_{e['donor']:04d}"
        assert (exp.dir / f"trial_{e['trial_id']:04d}" / "config.yaml").exists()
        # The copy is gone only once the recipient saved newer checkpoints of its own.
        assert copy.exists() or exp.trials[e["trial_id"]].step > e["step"]
    # After an exploit the recipient restarts from the donor's step: Curve's own counter follows.
    results = exp.journal.results()
    assert all(r["metrics"]["steps"] == r["step"] for r in results)
    first = entries[0]
    after = [(tid, step) for tid, step, _ in log if tid == first["trial_id"] and step > first["step"]]
    assert after and after[0][1] == first["step"] + 1
    assert all(t.status == TrialStatus.TERMINATED and t.step == 8 for t in exp.trials.values())
    exp.close()


def test_a_population_larger_than_the_slots_takes_turns(tmp_path):
    exp = make_exp(tmp_path, pbt={"PERTURBATION_INTERVAL": 1, "QUANTILE_FRACTION": 0.25}, NUM_TRIALS=5,
                   SPACE={"x": {"uniform": [0.0, 1.0]}}, MAX_STEPS=6)
    log = drive(exp, Curve, concurrency=2)
    reasons = [d["info"].get("reason") for d in exp.journal.decisions()]
    assert reasons.count("taking turns") >= 10
    # Round robin: until someone finishes, nobody gets far ahead of the slowest member (an exploit
    # may move a recipient up to its donor's step).
    progress = dict.fromkeys(range(1, 6), 0)
    for tid, step, _ in log:
        progress[tid] = step
        if max(progress.values()) == 6:
            break
        assert max(progress.values()) - min(progress.values()) <= 3
    assert all(t.step == 6 for t in exp.trials.values()) and len(exp.trials) == 5
    exp.close()


def test_taking_turns_never_starves_the_donors(tmp_path):
    """Recipients sent back to their donors' step queue behind the donors waiting there.

    Serving recipients first let two of them hold both slots and be exploited over and
    over while the donors waited (seed 3 looped forever that way).
    """
    for seed in (3, 4, 5):
        exp = make_exp(tmp_path, name=f"s{seed}", pbt={"PERTURBATION_INTERVAL": 2}, SEED=seed, MAX_STEPS=40,
                       SPACE={"lr": {"loguniform": [1e-3, 1.0]}})
        log = drive(exp, NoisyQuadratic, concurrency=2, limit=1000)
        assert len(log) < 300 and all(t.step == 40 for t in exp.trials.values()), (seed, len(log))
        exp.close()


def test_synchronous_rounds_wait_for_everyone(tmp_path):
    exp = make_exp(tmp_path, pbt={"PERTURBATION_INTERVAL": 2, "SYNCH": True, "QUANTILE_FRACTION": 0.25},
                   SPACE={"x": {"uniform": [0.0, 1.0]}}, MAX_STEPS=8)
    log = drive(exp, Curve, concurrency=3)
    # Nobody passes a barrier (steps 2, 4, 6) before all four members have reached it.
    for barrier in (2, 4, 6):
        first_past = next(i for i, (_, s, _) in enumerate(log) if s == barrier + 1)
        assert len({tid for tid, s, _ in log[:first_past] if s == barrier}) == 4
    entries = lineage(exp)
    assert sorted({e["step"] for e in entries}) == [2, 4, 6]
    assert all(t.step == 8 and t.status == TrialStatus.TERMINATED for t in exp.trials.values())
    exp.close()


def test_synchronous_round_waits_for_an_in_flight_save(tmp_path):
    """A recipient whose pause is still being saved is exploited once saved, not before (Ray's hang and #28196)."""
    exp = make_exp(tmp_path, pbt={"PERTURBATION_INTERVAL": 1, "SYNCH": True, "QUANTILE_FRACTION": 0.25},
                   SPACE={"x": {"uniform": [0.0, 1.0]}}, NUM_TRIALS=4, KEEP_CHECKPOINTS=1, MAX_CONCURRENT=4)
    sched = exp.scheduler
    trials = [exp.ask() for _ in range(4)]
    scores = {1: 0.1, 2: 0.5, 3: 0.6, 4: 0.9}
    objs = {}
    for t in trials:
        objs[t.id] = Curve()
        objs[t.id].setup(t.params, None)
        objs[t.id].steps = 1
    # Trial 1 (the worst) reports without a checkpoint: its save is still on its way.
    assert exp.tell(trials[0], {"score": scores[1]}, step=1) == Decision.PAUSE
    assert trials[0].status == TrialStatus.RUNNING
    for t in trials[1:]:
        path = save_checkpoint(exp, t, objs[t.id], 1)
        decision = exp.tell(t, {"score": scores[t.id]}, step=1, checkpoint=path)
    assert decision == Decision.PAUSE and 1 in sched.pending  # deferred, and trial 4 waits with the others
    assert exp.ask() is None  # nothing resumes while a donor's checkpoint must stay put
    donor = exp.trials[sched.pending[1][0]]
    assert donor.id in (3, 4) and donor.checkpoint in sched.pinned_checkpoints()
    exp.mark_paused(trials[0], save_checkpoint(exp, trials[0], objs[1], 1))  # the save arrives
    resumed = {t.id: t for t in (exp.ask() for _ in range(4))}
    assert set(resumed) == {1, 2, 3, 4} and not sched.pending
    recipient = resumed[1]
    assert "_from_0004" in recipient.restore_from and recipient.parent == 4
    assert (exp.dir / recipient.checkpoint).is_dir()  # its own late checkpoint did not replace the copy
    exp.close()


def test_mutations_option(tmp_path):
    exp = make_exp(tmp_path, pbt={"MUTATIONS": {"lr": {"loguniform": [1e-4, 1e-2]}, "extra": {"choice": [1, 2]}}},
                   SPACE={"x": {"uniform": [0.0, 1.0]}, "lr": {"loguniform": [1e-4, 1e-2]}})
    trial = exp.ask()
    assert set(trial.params) == {"x", "lr", "extra"}  # a mutated key outside the space starts from a sample
    new = exp.scheduler.explore(trial.params)
    assert new["x"] == trial.params["x"] and new["extra"] in (1, 2)
    exp.close()
    with pytest.raises(ConfigError, match="TUNE.PBT.MUTATIONS.lr: unknown domain 'logunif'"):
        make_exp(tmp_path, name="b", pbt={"MUTATIONS": {"lr": {"logunif": [1e-4, 1e-2]}}})
    with pytest.raises(ConfigError, match="QUANTILE_FRACTION must be in"):
        make_exp(tmp_path, name="c", pbt={"QUANTILE_FRACTION": 0.75})


def test_pinned_checkpoints_cover_what_exploits_still_need(tmp_path):
    exp = make_exp(tmp_path, pbt={"PERTURBATION_INTERVAL": 2, "QUANTILE_FRACTION": 0.5},
                   SPACE={"x": {"uniform": [0.0, 1.0]}}, NUM_TRIALS=2, KEEP_CHECKPOINTS=1, MAX_CONCURRENT=2)
    sched = exp.scheduler
    a, b = exp.ask(), exp.ask()
    for trial, score in ((a, 1.0), (b, 0.1)):
        obj = Curve()
        obj.setup(trial.params, None)
        exp.tell(trial, {"score": score}, step=1)
        obj.steps = 2
        path = save_checkpoint(exp, trial, obj, 2)
        decision = exp.tell(trial, {"score": score}, step=2, checkpoint=path)
    assert decision == Decision.PAUSE and b.parent == a.id  # b copied a
    assert sched.pinned_checkpoints() == {b.checkpoint} and "_from_0001" in b.checkpoint
    assert exp.ask() is b  # the recipient restarts first, from its copy
    assert b.restore_from.endswith(b.checkpoint) and sched.pinned_checkpoints() == set()
    exp.close()


class ExploitAudit:
    """Loads the donor's checkpoint and the recipient's copy at the moment of each exploit."""

    def __init__(self):
        self.experiment = None
        self.records = []

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        import torch

        if not str((info or {}).get("reason", "")).startswith("exploit"):
            return
        donor = self.experiment.trials[info["donor"]]
        source = self.experiment.dir / donor.checkpoint
        donor_state = torch.load(source / "state.pt", weights_only=True)
        copied = torch.load(f"{trial.restore_from}/state.pt", weights_only=True)
        self.records.append({"recipient": trial.id, "donor": donor.id, "step": trial.step, "params": dict(trial.params),
                             "source": str(source), "donor_state": donor_state, "copied": copied})


@pytest.mark.slow
def test_exploit_gives_the_recipient_exactly_the_donors_state(tmp_path):
    """A real run (2 at a time, worker processes): recipients restart from the donor's weights, optimizer and schedule."""
    torch = need("torch")
    cfg = {"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "pbt_trainables:LinearRegression", "NUM_TRIALS": 4, "MAX_CONCURRENT": 2,
        "MAX_STEPS": 8, "SEED": 0, "CHECKPOINT_FREQ": 0, "SCHEDULER": "pbt",
        "PBT": {"PERTURBATION_INTERVAL": 2, "QUANTILE_FRACTION": 0.25, "PERTURBATION_FACTORS": [5.0, 0.2],
                "EXPLORE": "factors",
                "RESAMPLE_PROBABILITY": 0.0},
        "SPACE": {"lr": {"loguniform": [0.005, 0.02]}, "momentum": {"uniform": [0.5, 0.95]}}}}
    audit = ExploitAudit()
    tuner = Tuner(cfg, reporters=[audit])
    audit.experiment = tuner.experiment
    summary = tuner.run()
    assert summary["status"] == {"TERMINATED": 4}
    exp_dir = tmp_path / "exp"
    entries = [json.loads(line) for line in (exp_dir / "pbt_lineage.jsonl").read_text().splitlines()]
    assert len(entries) == len(audit.records) >= 1
    for e, rec in zip(entries, audit.records):
        rid, did, step = e["trial_id"], e["donor"], e["donor_step"]
        assert (rec["recipient"], rec["donor"], rec["step"]) == (rid, did, step)
        assert rec["source"].startswith(str(exp_dir / f"trial_{did:04d}"))  # the donor's, not the recipient's own
        donor_state, copied = rec["donor_state"], rec["copied"]
        assert donor_state["steps"] == step and donor_state["sched"]["last_epoch"] == step
        assert digest(donor_state) == digest(copied)
        for key in ("weight", "bias"):
            assert torch.equal(donor_state["model"][key], copied["model"][key])
        for a, b in zip(donor_state["opt"]["state"].values(), copied["opt"]["state"].values()):
            assert torch.equal(a["momentum_buffer"], b["momentum_buffer"]) and a["momentum_buffer"].abs().sum() > 0
        assert donor_state["sched"] == copied["sched"]
        # The recipient's next result was computed from exactly that state, with its new learning rate.
        metrics = [json.loads(line) for line in (exp_dir / f"trial_{rid:04d}" / "metrics.jsonl").read_text().splitlines()]
        resumed = next(m for m in metrics if m["start_step"] == step and m["step"] == step + 1
                       and m["timestamp"] >= e["time"])
        assert resumed["start_digest"] == digest(donor_state)
        new_lr = e["new_params"]["lr"]
        assert resumed["base_lr"] == pytest.approx(new_lr)
        # Factors 5 and 0.2 always leave these domains: every explored value is clipped to a bound.
        assert new_lr in (pytest.approx(0.005), pytest.approx(0.02))
        assert e["new_params"]["momentum"] in (0.5, 0.95)
    assert np.isfinite([e["donor_score"] for e in entries]).all()


def test_resume_restores_the_population_state(tmp_path):
    pbt = {"PERTURBATION_INTERVAL": 1, "QUANTILE_FRACTION": 0.25}
    exp = make_exp(tmp_path, pbt=pbt, SPACE={"x": {"uniform": [0.0, 1.0]}}, NUM_TRIALS=5)
    drive(exp, Curve, concurrency=2, limit=14)
    state = exp.scheduler.state_dict()
    assert lineage(exp) and state["waiting"]
    exp.close()  # a crash: trials are left running or paused
    again = Experiment({"OUTPUT_DIR": str(tmp_path), "TUNE": {
        "NAME": "exp", "TRAINABLE": "noop", "NUM_TRIALS": 5, "MAX_STEPS": 8, "REPORTERS": [], "SEED": 1,
        "CHECKPOINT_FREQ": 0, "SCHEDULER": "pbt", "PBT": pbt, "SPACE": {"x": {"uniform": [0.0, 1.0]}}}}, resume=True)
    assert again.scheduler.state_dict() == state
    drive(again, Curve, concurrency=2)
    assert all(t.step == 8 and t.status == TrialStatus.TERMINATED for t in again.trials.values())
    assert len(again.trials) == 5
    assert all(r["metrics"]["steps"] == r["step"] for r in again.journal.results())
    again.close()

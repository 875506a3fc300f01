"""Population based training, asynchronous by default."""

from __future__ import annotations

import bisect
import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.scheduler import Scheduler
from reidplug.core.space import SearchSpace
from reidplug.core.trial import Decision, Trial, TrialStatus
from reidplug.plugins.schedulers._rungs import check_pausable

_ACTIVE = (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)


class PBTScheduler(Scheduler):
    """Every PERTURBATION_INTERVAL steps, a trial in the bottom quantile copies a top one and perturbs it.

    Exploit goes through `experiment.exploit`: the recipient gets its own copy of the
    donor's checkpoint and restarts from it with the explored parameters. A
    population larger than the free slots takes turns: at each interval a trial
    pauses when another member is waiting. With SYNCH, members wait for each other
    at every interval and are perturbed together. See docs/schedulers.md.
    """

    OPTIONS = {
        "PERTURBATION_INTERVAL": 1,
        "BURN_IN": 0,
        "QUANTILE_FRACTION": 0.25,
        "RESAMPLE_PROBABILITY": 0.25,
        "PERTURBATION_FACTORS": [1.2, 0.8],
        "MUTATIONS": {},
        "POPULATION": 0,
        "SYNCH": False,
        # What reidplug adds to Ray's PBT, each measured on bench/pbt_peers.py; docs/schedulers.md.
        "SMOOTHING": 1,
        "EXPLOIT": "truncation",
        "EXPLORE": "unit",
        "EXPLORE_SCALE": 0.1,
    }

    def __init__(self, searcher, *, perturbation_interval=1, burn_in=0, quantile_fraction=0.25,
                 resample_probability=0.25, perturbation_factors=(1.2, 0.8), mutations=None, population=0,
                 synch=False, smoothing=1, exploit="truncation", explore="unit", explore_scale=0.1, **kwargs):
        super().__init__(searcher, **kwargs)
        if perturbation_interval < 1:
            raise ValueError(f"PERTURBATION_INTERVAL must be at least 1 step, got {perturbation_interval}")
        if burn_in < 0 or population < 0:
            raise ValueError("BURN_IN and POPULATION cannot be negative")
        if not 0 < quantile_fraction <= 0.5:
            raise ValueError(f"QUANTILE_FRACTION must be in (0, 0.5], got {quantile_fraction}")
        if not 0 <= resample_probability <= 1:
            raise ValueError(f"RESAMPLE_PROBABILITY must be between 0 and 1, got {resample_probability}")
        factors = list(perturbation_factors)
        if not factors or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0 for f in factors):
            raise ValueError(f"PERTURBATION_FACTORS must be a list of positive numbers, got {perturbation_factors!r}")
        if smoothing < 1:
            raise ValueError(f"SMOOTHING must be at least 1 result, got {smoothing}")
        if exploit not in ("truncation", "ttest"):
            raise ValueError(f"EXPLOIT must be 'truncation' or 'ttest', got {exploit!r}")
        if explore not in ("factors", "unit"):
            raise ValueError(f"EXPLORE must be 'factors' or 'unit', got {explore!r}")
        if not 0 < explore_scale <= 1:
            raise ValueError(f"EXPLORE_SCALE must be in (0, 1], got {explore_scale}")
        self.smoothing = int(smoothing)
        self.exploit_rule = exploit
        self.explore_mode = explore
        self.explore_scale = float(explore_scale)
        self.interval = int(perturbation_interval)
        self.burn_in = int(burn_in)
        self.quantile_fraction = float(quantile_fraction)
        self.resample_probability = float(resample_probability)
        self.factors = [float(f) for f in factors]
        self.synch = bool(synch)
        self._population_option = int(population)
        self._mutation_spec = dict(mutations or {})
        # Malformed domains are reported now; config keys are checked in setup (Re-ID or not).
        SearchSpace.parse(self._mutation_spec, prefix="TUNE.PBT.MUTATIONS", schema=False)
        self.mutations: SearchSpace | None = None
        self.population = 0
        self._rng = np.random.default_rng(self.seed)
        self.members: list[int] = []
        self.failed: set[int] = set()
        self.last_perturbation: dict[int, int] = {}
        self.scores: dict[int, float] = {}  # score at the last perturbation, for unfinished members
        self.recent: dict[int, list[float]] = {}  # the latest SMOOTHING scores since the member's last restart
        self._ranked: list[tuple[float, int]] = []  # (score, id), worst first
        self.exploited: list[int] = []  # recipients that have not restarted from their copy yet
        self.waiting: list[int] = []  # members paused to let others run, oldest first
        self.held: set[int] = set()  # SYNCH: members waiting at the barrier
        self.pending: dict[int, tuple[int, dict, dict]] = {}  # SYNCH: recipient -> (donor, params, info)

    def setup(self, experiment):
        super().setup(experiment)
        check_pausable(experiment, "PBT")
        self.population = self._population_option or experiment.cfg.TUNE.NUM_TRIALS
        if self._mutation_spec:
            key = "TUNE.PBT.MUTATIONS"
            self.mutations = SearchSpace.parse(self._mutation_spec, file=experiment.origins.of(key), prefix=key,
                                               schema=experiment.is_reid)
        else:
            self.mutations = experiment.space

    # ------------------------------------------------------------------ population

    def _alive(self) -> list[Trial]:
        trials = self.experiment.trials
        return [trials[t] for t in self.members if t in trials and trials[t].status != TrialStatus.ERROR]

    def _can_grow(self) -> bool:
        # Failed members are replaced while TUNE.NUM_TRIALS allows.
        return len(self.members) - len(self.failed) < self.population and self.experiment.can_create()

    def _create(self) -> Trial | None:
        exp = self.experiment
        if not self._can_grow():
            return None
        trial_id = exp.next_trial_id()
        params = self.searcher.suggest(trial_id)
        if params is None:
            return None
        params = dict(params)
        for name, domain in self.mutations.items():
            if name not in params:  # mutated but not searched: start from a sample, as Ray does
                params[name] = domain.sample(self._rng)
        trial = exp.create_trial(params, trial_id=trial_id)
        self.members.append(trial.id)
        self.last_perturbation[trial.id] = 0
        if trial.status == TrialStatus.ERROR:  # a rejected configuration
            self.failed.add(trial.id)
        return trial

    # ------------------------------------------------------------------ ranking

    def _set_score(self, trial_id: int, score: float | None) -> None:
        old = self.scores.pop(trial_id, None)
        if old is not None:
            i = bisect.bisect_left(self._ranked, (old, trial_id))
            if i < len(self._ranked) and self._ranked[i] == (old, trial_id):
                del self._ranked[i]
        if score is not None:
            self.scores[trial_id] = score
            bisect.insort(self._ranked, (score, trial_id))

    def _quantile_size(self) -> int:
        n = len(self._ranked)
        k = math.ceil(n * self.quantile_fraction)
        return n // 2 if k > n / 2 else k

    def quantiles(self) -> tuple[list[int], list[int]]:
        """(bottom, top) member ids: k = ceil(n * q) each, at most n // 2, over unfinished scored members."""
        n, k = len(self._ranked), self._quantile_size()
        return [t for _, t in self._ranked[:k]], [t for _, t in self._ranked[n - k:]]

    # ------------------------------------------------------------------ explore

    def explore(self, params: dict) -> dict:
        """Perturb the mutated parameters: numbers by a factor (clipped to the domain), choices to a neighbour."""
        rng = self._rng
        new = dict(params)
        for name, domain in self.mutations.items():
            value = new.get(name)
            if value is None or not domain.contains(value) or rng.random() < self.resample_probability:
                new[name] = domain.sample(rng)
            elif domain.categorical:
                i = domain.index(value) + (1 if rng.random() < 0.5 else -1)
                new[name] = domain.values[min(max(i, 0), len(domain.values) - 1)]
            elif self.explore_mode == "unit":
                # A step in the domain's own coordinates (log ones for log domains), reflected
                # at the bounds: a factor clipped to a bound piles members up on it.
                u = domain.to_unit(value) + rng.normal(0.0, self.explore_scale)
                u = abs(u) % 2.0
                new[name] = domain.from_unit(2.0 - u if u > 1.0 else u)
            else:
                factor = self.factors[int(rng.integers(len(self.factors)))]
                new[name] = domain.clip(value * factor)
        return new

    # ------------------------------------------------------------------ decisions

    def _due(self, trial_id: int, step: int) -> bool:
        last = self.last_perturbation.get(trial_id)
        return last is not None and step >= self.burn_in and step - last >= self.interval and step < self.max_steps

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        # A checkpoint at every perturbation point: a donor always has one at the step it is ranked by.
        return self._due(trial.id, step)

    def _smoothed(self, trial_id: int, score: float) -> float:
        # The t-test needs a sample: without smoothing it looks at the last interval's results.
        window = self.smoothing if self.smoothing > 1 else (self.interval if self.exploit_rule == "ttest" else 1)
        if window == 1:
            return score
        recent = self.recent.setdefault(trial_id, [])
        recent.append(score)
        if len(recent) > window:
            del recent[0]
        if self.smoothing == 1:
            return score
        finite = [v for v in recent[-self.smoothing:] if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else score

    def on_result(self, trial: Trial, result: dict) -> Decision:
        step = int(result["step"])
        score = self._smoothed(trial.id, self.score(result))
        if not self._due(trial.id, step):
            return Decision.CONTINUE
        self.last_perturbation[trial.id] = step
        self._set_score(trial.id, score)
        if self.synch:
            self.held.add(trial.id)
            if not self._barrier_reached():
                self.last_info = {"reason": "waiting for the population", "step": step}
                return Decision.PAUSE
            self.last_info = {"reason": "kept", "step": step}
            self._round(current=trial)
            if trial.id in self.exploited:
                return Decision.PAUSE
            if self.pending:
                # Donors keep still until the deferred exploits are done; this one waits with them.
                self.waiting.append(trial.id)
                return Decision.PAUSE
            return Decision.CONTINUE
        n, k = len(self._ranked), self._quantile_size()
        rank = bisect.bisect_left(self._ranked, (self.scores[trial.id], trial.id))  # 0: the worst
        if rank < k:
            donor = self._ranked[n - 1 - int(self._rng.integers(k))][1]
            if self._worth_copying(trial.id, donor) and self._exploit(trial, donor, report=True):
                return Decision.PAUSE
        self.last_info = {"reason": "kept", "step": step, "quantile": "top" if rank >= n - k else "middle"}
        if self._someone_waiting(trial.id):
            self.waiting.append(trial.id)
            self.last_info["reason"] = "taking turns"
            return Decision.PAUSE
        return Decision.CONTINUE

    def _worth_copying(self, recipient_id: int, donor_id: int) -> bool:
        """EXPLOIT ttest: copy only a donor whose recent scores are better by Welch's t-test (Jaderberg et al.)."""
        if self.exploit_rule == "truncation":
            return True
        a = [v for v in self.recent.get(recipient_id, []) if math.isfinite(v)]
        b = [v for v in self.recent.get(donor_id, []) if math.isfinite(v)]
        if len(a) < 2 or len(b) < 2:
            return True
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        va = sum((v - ma) ** 2 for v in a) / (len(a) - 1)
        vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1)
        se = math.sqrt(va / len(a) + vb / len(b))
        # t > 1.645: one-sided 5 % under a normal approximation, enough for windows of a few results.
        return se == 0.0 and mb > ma or se > 0.0 and (mb - ma) / se > 1.645

    def explore_for(self, recipient: Trial, donor: Trial) -> dict:
        """The recipient's new parameters: PBT perturbs the donor's; PB2 chooses them with its model."""
        return self.explore(donor.params)

    def _exploit(self, recipient: Trial, donor_id: int, *, now: bool = True, report: bool = False) -> bool:
        donor = self.experiment.trials[donor_id]
        params = self.explore_for(recipient, donor)
        info = {"donor_score": self.scores.get(donor.id), "recipient_score": self.scores.get(recipient.id)}
        if not now:
            self.pending[recipient.id] = (donor.id, params, info)
            return True
        return self._apply_exploit(recipient, donor, params, info, report=report)

    def _apply_exploit(self, recipient: Trial, donor: Trial, params: dict, info: dict, report: bool = False) -> bool:
        if not self.experiment.exploit(recipient, donor, params, **info):
            return False  # the donor has no intact checkpoint: nothing to copy
        self.last_perturbation[recipient.id] = recipient.step
        self._set_score(recipient.id, None)  # ranked again at its next interval
        self.recent.pop(recipient.id, None)  # its old scores are not the copy's
        if recipient.id in self.waiting:
            self.waiting.remove(recipient.id)
        self.waiting.append(recipient.id)
        self.exploited.append(recipient.id)
        if report:  # the decision being made is this trial's
            self.last_info = {"reason": f"exploit trial {donor.id}", "donor": donor.id, "step": recipient.step,
                              "params": params}
        return True

    def _someone_waiting(self, exclude: int) -> bool:
        trials = self.experiment.trials
        # A member whose pause is still being saved is waiting too.
        self.waiting = [t for t in self.waiting if not trials[t].status.done]
        return any(t != exclude for t in self.waiting) or self._can_grow()

    # ------------------------------------------------------------------ synchronous rounds

    def _barrier_reached(self) -> bool:
        if self._can_grow():
            return False
        return all(t.id in self.held for t in self._alive() if not t.status.done)

    def _round(self, current: Trial | None = None) -> None:
        """Everyone is at the barrier: exploit and explore the bottom quantile, then let all go on."""
        trials = self.experiment.trials
        bottom, top = self.quantiles()
        for tid in bottom:
            recipient = trials[tid]
            donor = top[int(self._rng.integers(len(top)))]
            if not self._worth_copying(tid, donor):
                continue
            # A recipient whose pause is still being saved is exploited once saved, so that
            # its own late checkpoint cannot replace the donor's copy.
            now = recipient is current or recipient.status == TrialStatus.PAUSED
            self._exploit(recipient, donor, now=now, report=recipient is current)
        skip = set(self.exploited) | set(self.pending) | ({current.id} if current is not None else set())
        self.waiting += sorted(t for t in self.held if t not in skip)
        self.held = set()

    def _apply_pending(self) -> None:
        trials = self.experiment.trials
        for tid, (donor_id, params, info) in list(self.pending.items()):
            recipient = trials[tid]
            if recipient.status.done:
                del self.pending[tid]
            elif recipient.status == TrialStatus.PAUSED:
                del self.pending[tid]
                if not self._apply_exploit(recipient, trials[donor_id], params, info):
                    self.waiting.append(tid)

    # ------------------------------------------------------------------ what to launch

    def next_trial(self):
        trials = self.experiment.trials
        if self.pending:
            self._apply_pending()
            if self.pending:
                return None  # donors keep their checkpoints until every deferred exploit is done
        self.exploited = [t for t in self.exploited if not trials[t].status.done]
        trial = self._create()
        if trial is not None:
            return trial
        # Round robin (as Ray's PBT): the waiting member that has trained least goes first, and
        # of those the one waiting longest. Exploited recipients queue like everyone else: were
        # they served first, recipients sent back to their donors' step could take every slot
        # while the donors wait, and be exploited again and again.
        best = None
        for tid in self.waiting:
            t = trials[tid]
            if t.status == TrialStatus.PAUSED and (best is None or t.step < best.step):
                best = t
        if best is not None:
            self.waiting.remove(best.id)
            if best.id in self.exploited:
                self.exploited.remove(best.id)
        return best

    def on_complete(self, trial: Trial) -> None:
        self._gone(trial)

    def on_error(self, trial: Trial) -> None:
        if trial.id in self.last_perturbation:
            self.failed.add(trial.id)
        self._gone(trial)

    def _gone(self, trial: Trial) -> None:
        self._set_score(trial.id, None)
        self.recent.pop(trial.id, None)
        self.held.discard(trial.id)
        if trial.id in self.waiting:
            self.waiting.remove(trial.id)
        if self.synch and self.held and self._barrier_reached():
            self._round()

    def is_finished(self) -> bool:
        exp = self.experiment
        return not any(t.status in _ACTIVE for t in exp.trials.values()) and not self._can_grow()

    def pinned_checkpoints(self) -> set[str]:
        """What exploits still need: donors' checkpoints of deferred exploits, and the copies recipients restart from.

        The experiment keeps every active trial's newest checkpoint anyway; these must
        survive even if that rule or the trial's status changes before they are used.
        """
        trials = self.experiment.trials
        ids = [donor for donor, _, _ in self.pending.values()] + list(self.exploited)
        return {trials[t].checkpoint for t in ids if t in trials and trials[t].checkpoint}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "members": list(self.members), "failed": set(self.failed), "last_perturbation": dict(self.last_perturbation),
            "scores": dict(self.scores), "exploited": list(self.exploited), "waiting": list(self.waiting),
            "held": set(self.held), "pending": dict(self.pending), "rng": self._rng.bit_generator.state,
            "recent": {t: list(v) for t, v in self.recent.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.members = list(state["members"])
        self.failed = set(state["failed"])
        self.last_perturbation = dict(state["last_perturbation"])
        self.scores, self._ranked = {}, []
        for tid, score in state["scores"].items():
            self._set_score(tid, score)
        self.exploited = list(state["exploited"])
        self.waiting = list(state["waiting"])
        self.held = set(state["held"])
        self.pending = dict(state["pending"])
        self._rng.bit_generator.state = state["rng"]
        self.recent = {t: list(v) for t, v in state.get("recent", {}).items()}  # older journals have none


@hookimpl
def register_schedulers(register):
    register("pbt", PBTScheduler, description="population based training (asynchronous, or SYNCH)")


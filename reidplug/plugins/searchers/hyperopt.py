"""TPE through hyperopt, as a real ask/tell searcher (no fmin, no threads)."""

from __future__ import annotations

import copy
import math

import numpy as np

from reidplug.core.hookspecs import hookimpl
from reidplug.core.searcher import Searcher
from reidplug.core.space import Choice, RandInt


def _identity(params):
    return params


def _plain(value):
    """A numpy scalar as the Python number it holds (states and docs stay plain)."""
    return value.item() if isinstance(value, np.generic) else value


def hyperopt_space(space) -> dict:
    """The hyperopt expression of each domain, labelled by its name."""
    from hyperopt import hp, pyll

    out = {}
    for name, d in space.items():
        if d.kind == "choice":
            # As literals, list and dict values come back as they are (pyll would make lists tuples).
            out[name] = hp.choice(name, [pyll.Literal(v) for v in d.values])
        elif d.kind == "uniform":
            out[name] = hp.uniform(name, d.low, d.high)
        elif d.kind == "loguniform":
            out[name] = hp.loguniform(name, math.log(d.low), math.log(d.high))
        elif d.kind == "quniform":
            out[name] = hp.quniform(name, d.low, d.high, d.q)
        elif d.kind == "qloguniform":
            out[name] = hp.qloguniform(name, math.log(d.low), math.log(d.high), d.q)
        elif d.kind == "randint":
            out[name] = hp.randint(name, d.low, d.high)
        else:
            raise ValueError(f"hyperopt cannot search a {d.kind!r} domain ({name})")
    return out


def _record(doc) -> tuple:
    """A document as plain data: (tid, state, result, vals)."""
    vals = {name: [_plain(v) for v in values] for name, values in doc["misc"]["vals"].items()}
    return doc["tid"], doc["state"], dict(doc["result"]), vals


class HyperoptSearcher(Searcher):
    """Tree-structured Parzen Estimator over hyperopt's own Trials and Domain.

    Every suggestion is a trial document in `Trials`: new while the trial runs
    (TPE counts it, with loss +inf, as hyperopt does under parallel fmin), done
    with its loss, or error (a failure or a missing or non-finite metric; TPE
    leaves error documents out, as under fmin). Warm-start points become
    documents too. Run sequentially, it suggests what `hyperopt.fmin` would.
    """

    OPTIONS = {"N_STARTUP_JOBS": 20, "GAMMA": 0.25, "N_EI_CANDIDATES": 24}

    def __init__(self, space, *, n_startup_jobs: int = 20, gamma: float = 0.25, n_ei_candidates: int = 24, **kwargs):
        super().__init__(space, **kwargs)
        if int(n_startup_jobs) < 0:
            raise ValueError(f"N_STARTUP_JOBS must be >= 0, got {n_startup_jobs!r}")
        if not 0 < float(gamma) < 1:
            raise ValueError(f"GAMMA must be in (0, 1), got {gamma!r}")
        if int(n_ei_candidates) < 1:
            raise ValueError(f"N_EI_CANDIDATES must be >= 1, got {n_ei_candidates!r}")
        from hyperopt import Trials
        from hyperopt.base import Domain

        self.n_startup_jobs = int(n_startup_jobs)
        self.gamma = float(gamma)
        self.n_ei_candidates = int(n_ei_candidates)
        self._domain = Domain(_identity, hyperopt_space(space)) if len(space) else None
        self._trials = Trials()
        self._docs: dict[int, dict] = {}  # hyperopt tid -> its document, error documents included
        self._tids: dict[int, int] = {}  # our trial id -> hyperopt tid, while the trial runs
        self._records: dict[int, tuple] = {}  # hyperopt tid -> its document as plain data, for state_dict
        self._rng = np.random.default_rng(self.seed)

    # -- ask
    def _suggest(self, trial_id):
        if self._domain is None:
            return {}
        from hyperopt import tpe

        tid = self._new_tid()
        seed = int(self._rng.integers(2**31 - 1))
        docs = tpe.suggest(
            [tid], self._domain, self._trials, seed,
            n_startup_jobs=self.n_startup_jobs, n_EI_candidates=self.n_ei_candidates, gamma=self.gamma,
        )
        doc = docs[0]
        params = self._materialise(doc)
        # The model learns from what ran: quantized values clipped into the domain.
        for name, d in self.space.items():
            if not d.categorical:
                doc["misc"]["vals"][name] = [params[name]]
        self._insert(doc, trial_id)
        return params

    def _materialise(self, doc) -> dict:
        """The configuration of a document: hp.choice gives its value, numbers get their domain's type."""
        from hyperopt import pyll
        from hyperopt.base import spec_from_misc

        memo = self._domain.memo_from_config(spec_from_misc(doc["misc"]))
        raw = pyll.rec_eval(self._domain.expr, memo=memo)
        params = {}
        for name, d in self.space.items():
            value = _plain(raw[name])
            if isinstance(d, Choice):
                params[name] = copy.deepcopy(value)  # never the space's own list or dict
            elif isinstance(d, RandInt):
                params[name] = d.clip(int(value))
            else:
                # clip() quantizes q-domains (ints for an integer step) and may return an int bound.
                value = d.clip(float(value))
                params[name] = value if isinstance(value, int) and d.q is not None else float(value)
        return params

    def _observe_point(self, trial_id, params):
        if self._domain is None:
            return
        vals = {}
        try:
            for name, d in self.space.items():
                value = params[name]
                vals[name] = [d.index(value) if isinstance(d, Choice) else _plain(value)]
        except (KeyError, ValueError):
            return  # a point outside the space still runs; the model just does not learn from it
        tid = self._new_tid()
        self._insert(self._new_doc(tid, vals), trial_id)

    def _new_tid(self) -> int:
        # Counted here rather than by Trials.new_trial_ids: Trials counts the documents it
        # lists, which leave out error documents (TPE ignores them, as under fmin), so a
        # restored Trials would hand out a tid already used.
        return max(self._docs, default=-1) + 1

    def _new_doc(self, tid: int, vals: dict) -> dict:
        misc = {
            "tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir,
            "idxs": {name: [tid] if v else [] for name, v in vals.items()}, "vals": vals,
        }
        return self._trials.new_trial_docs([tid], [None], [self._domain.new_result()], [misc])[0]

    def _insert(self, doc, trial_id) -> None:
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()
        self._docs[doc["tid"]] = stored = self._trials.trials[-1]
        self._tids[trial_id] = doc["tid"]
        self._records[doc["tid"]] = _record(stored)

    # -- tell
    def on_complete(self, trial_id, result=None, error=False):
        super().on_complete(trial_id, result, error)
        tid = self._tids.pop(trial_id, None)
        if tid is None:
            return
        from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL, STATUS_OK

        doc = self._docs[tid]
        loss = self.loss(result)
        if error or not math.isfinite(loss):
            doc["state"], doc["result"] = JOB_STATE_ERROR, {"status": STATUS_FAIL}
        else:
            doc["state"], doc["result"] = JOB_STATE_DONE, {"status": STATUS_OK, "loss": loss}
        self._records[tid] = _record(doc)
        self._trials.refresh()

    @property
    def pending(self) -> int:
        """Documents TPE sees as new or running (loss +inf)."""
        from hyperopt import JOB_STATE_NEW, JOB_STATE_RUNNING

        return sum(doc["state"] in (JOB_STATE_NEW, JOB_STATE_RUNNING) for doc in self._trials.trials)

    # -- state
    def state_dict(self):
        # Records are made once per change (not per call): the experiment saves the state after every event.
        return {**super().state_dict(), "docs": list(self._records.values()), "tids": dict(self._tids),
                "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state):
        from hyperopt import Trials

        super().load_state_dict(state)
        self._trials, self._docs = Trials(), {}
        records = state["docs"]
        self._records = {record[0]: record for record in records}
        if records:
            # Inserted as new documents so that Trials lists them all, then given their state.
            docs = [self._new_doc(tid, {name: list(v) for name, v in vals.items()}) for tid, _, _, vals in records]
            self._trials.insert_trial_docs(docs)
            self._trials.refresh()
            self._docs = {doc["tid"]: doc for doc in self._trials.trials}
            for tid, job_state, result, _ in records:
                self._docs[tid]["state"], self._docs[tid]["result"] = job_state, dict(result)
        self._trials.refresh()
        self._tids = dict(state["tids"])
        self._rng.bit_generator.state = state["rng"]


@hookimpl
def register_searchers(register):
    register("hyperopt", HyperoptSearcher, description="TPE (hyperopt), ask/tell with pending trials counted")

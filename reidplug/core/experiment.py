"""An experiment: trials, searcher, scheduler and journal, driven by ask/tell.

The Tuner drives an Experiment with an executor; an application that owns its
training loop drives it directly::

    exp = Experiment("search.yml")
    while (trial := exp.ask()) is not None:
        metrics = train_one_step(trial.params, restore=trial.restore_from)
        decision = exp.tell(trial, metrics)   # CONTINUE, PAUSE or STOP
    exp.finish()
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from reidplug.core import checkpoints as ckpt
from reidplug.core import faults, outputs
from reidplug.core import journal as journal_file
from reidplug.core.config import Origins, get_dotted, load_config, to_yaml, unstructure, with_params
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.journal import SCHEMA_VERSION, Journal, finite
from reidplug.core.lock import FolderLock
from reidplug.core.manager import plugin_manager
from reidplug.core.options import resolve_options
from reidplug.core.preflight import check_name, check_tune, check_writable_folder
from reidplug.core.registry import resolve
from reidplug.core.retention import Retention, staging_leftovers, temporary_files
from reidplug.core.space import SearchSpace
from reidplug.core.state import declared_types
from reidplug.core.trainable import prepare_trainable
from reidplug.core.trial import Decision, Trial, TrialStatus

_ACTIVE = (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)
# Keys that may change between a run and its --resume; anything else must match.
_RESUMABLE_KEYS = {
    "TUNE.NUM_TRIALS", "TUNE.TIME_BUDGET_S", "TUNE.MAX_CONCURRENT", "TUNE.REPORTERS", "TUNE.MAX_FAILURES",
    "TUNE.KEEP_CHECKPOINTS", "TUNE.EXECUTOR", "TUNE.RESOURCES_PER_TRIAL", "TUNE.RAY",
    "TUNE.CONSOLE", "TUNE.TENSORBOARD", "TUNE.MLFLOW", "TUNE.JSONL", "TUNE.CSV", "TUNE.LOCAL",
    "DATALOADER.NUM_WORKERS", "OUTPUT_DIR", "TUNE.NAME",
}


class Experiment:
    """The state of one search, journaled so that it survives a crash."""

    def __init__(
        self,
        config,
        overrides=(),
        *,
        trainable: Any = None,
        resume: bool = False,
        fresh: bool = False,
        reporters: list | None = None,
        lock: bool = True,
        dry_run: bool = False,
        prepare: bool = False,
    ):
        self.cfg = cfg = load_config(config, overrides)
        self.pm = plugin_manager()
        self.hook = self.pm.hook
        tune = cfg.TUNE
        self.trainable = trainable if trainable is not None else tune.TRAINABLE
        self.is_reid = trainable is None and tune.TRAINABLE == "reid"
        self.launch_trainable: str | None = None  # set by _check_trainable when it can
        self._check_trainable()
        check_tune(tune, self._origin)
        source = getattr(cfg, "source_file", None)
        default_name = Path(source).stem if source and not source.startswith("<") else "experiment"
        self.name = tune.NAME = tune.NAME or default_name
        check_name(self.name, self._origin("TUNE.NAME"))
        check_writable_folder(Path(cfg.OUTPUT_DIR), "OUTPUT_DIR", self._origin("OUTPUT_DIR"))
        if tune.STORAGE:
            check_writable_folder(Path(tune.STORAGE), "TUNE.STORAGE", self._origin("TUNE.STORAGE"))
        self.dir = Path(cfg.OUTPUT_DIR) / self.name
        self._trial_dirs: dict[int, Path] = {}
        # Checkpoints may live on storage shared by all nodes while the journal stays on local disk
        # (SQLite's locking and network file systems do not mix well).
        self.storage = Path(tune.STORAGE) / self.name if tune.STORAGE else self.dir
        self.metric, self.mode = tune.METRIC, tune.MODE
        self.origins: Origins = getattr(cfg, "origins", Origins())
        self.space = SearchSpace.parse(tune.SPACE, file=self.origins.of("TUNE.SPACE"), schema=self.is_reid)
        self._check_points()
        if self.is_reid:
            self.max_steps = tune.MAX_STEPS or math.ceil(cfg.SOLVER.MAX_EPOCH / tune.STEP_EPOCHS)
        else:
            self.max_steps = tune.MAX_STEPS or 1
        self._check_plugin_sections()
        executor = self.component("executor", tune.EXECUTOR, "TUNE.EXECUTOR").load()
        preflight = getattr(executor, "preflight", None)
        if preflight is not None and not dry_run:
            preflight(self)  # executor settings checked before anything is written
        self.searcher = self._build("searcher", tune.SEARCHER)
        self.scheduler = self._build("scheduler", tune.SCHEDULER)
        self.reporters = reporters if reporters is not None else [self._build("reporter", n) for n in tune.REPORTERS]
        # The classes besides plain data that each component's journaled state may hold.
        self._state_types = {"searcher": declared_types(self.searcher), "scheduler": declared_types(self.scheduler)}

        self.trials: dict[int, Trial] = {}
        self._best: Trial | None | bool = None  # False: needs a rescan
        self._retention = Retention(self.storage)
        self._saving: set[int] = set()  # paused by a decision, their checkpoint still being saved
        self._next_id = 1
        self._restarts: list[Trial] = []
        self._started_at = time.time()
        self._time_used_before = 0.0
        self._stopped_reason: str | None = None
        self._finished = False
        self.journal: Journal | None = None
        self._lock = FolderLock(self.dir) if lock and not dry_run else None
        if dry_run:
            return  # everything is built and checked; nothing is written
        if prepare:
            # Shared inputs (a dataset cache) are built here, once, and a bad one is refused
            # before the experiment folder exists.
            prepare_trainable(self.trainable_for_workers(), cfg)
        try:
            self._open(resume=resume, fresh=fresh)
            self.scheduler.setup(self)
            if resume:
                self._restore_state()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ building

    def _check_trainable(self) -> None:
        if not isinstance(self.trainable, str):
            return
        if ":" in self.trainable:
            try:
                target = resolve(self.trainable)
            except UserError as exc:
                raise ConfigError(str(exc), file=self._origin("TUNE.TRAINABLE"), key="TUNE.TRAINABLE") from None
            if not callable(target):
                raise ConfigError(
                    f"{self.trainable} is a {type(target).__name__}, not a Trainable class or a "
                    "train(config, report) function", file=self._origin("TUNE.TRAINABLE"), key="TUNE.TRAINABLE",
                )
        else:
            entry = self.component("trainable", self.trainable, "TUNE.TRAINABLE")
            # Workers get an import reference when there is one, so that they need not scan
            # the installed plugins themselves (a third of a second per worker start).
            ref = entry.factory if isinstance(entry.factory, str) else _importable_ref(entry.factory)
            if ref:
                self.launch_trainable = ref

    def trainable_for_workers(self) -> Any:
        """What a LaunchSpec carries: an import reference where one exists, else the name or object."""
        return self.launch_trainable or self.trainable

    def _origin(self, key: str) -> str | None:
        return getattr(self.cfg, "origins", Origins()).of(key)

    def _check_points(self) -> None:
        for i, point in enumerate(self.cfg.TUNE.POINTS_TO_EVALUATE):
            key = f"TUNE.POINTS_TO_EVALUATE[{i}]"
            unknown = [k for k in point if k not in self.space.domains]
            if unknown:
                raise ConfigError(f"{unknown[0]!r} is not in TUNE.SPACE", file=self._origin(key), key=key)
            missing = [k for k in self.space.domains if k not in point]
            if missing:
                raise ConfigError(f"missing a value for {missing[0]!r}", file=self._origin(key), key=key)

    def _check_plugin_sections(self) -> None:
        known = {}
        for kind in ("searcher", "scheduler", "executor", "reporter"):
            for entry in self.pm.registry(kind):
                known[entry.name.upper()] = kind
        for section in self.cfg.TUNE.PLUGINS:
            if section not in known:
                import difflib

                close = difflib.get_close_matches(section, list(known), n=1)
                hint = f" (did you mean 'TUNE.{close[0]}'?)" if close else ""
                raise ConfigError(
                    f"unknown key{hint}; option sections are named after a searcher, scheduler, executor or reporter",
                    file=self._origin(f"TUNE.{section}"),
                    key=f"TUNE.{section}",
                )

    def component(self, kind: str, name: str, key: str):
        """The registry entry for `name`; an unknown name is an error naming the file and key."""
        try:
            return self.pm.registry(kind).entry(name, config_key=key)
        except ConfigError as exc:
            exc.file = exc.file or self._origin(key)
            exc.args = (exc._format(),)
            raise

    def options(self, name: str, cls: Any) -> dict:
        section = self.cfg.TUNE.PLUGINS.get(name.upper())
        key = f"TUNE.{name.upper()}"
        return resolve_options(cls, section, key=key, file=self._origin(key))

    def _build(self, kind: str, name: str):
        key = {"searcher": "TUNE.SEARCHER", "scheduler": "TUNE.SCHEDULER", "reporter": "TUNE.REPORTERS"}[kind]
        entry = self.component(kind, name, key)
        cls = entry.load()
        opts = self.options(entry.name, cls)
        tune = self.cfg.TUNE
        try:
            if kind == "searcher":
                return cls(
                    self.space, metric=self.metric, mode=self.mode, seed=tune.SEED,
                    points_to_evaluate=tune.POINTS_TO_EVALUATE, max_concurrent=tune.MAX_CONCURRENT,
                    num_trials=tune.NUM_TRIALS, **opts,
                )
            if kind == "scheduler":
                return cls(
                    self.searcher, metric=self.metric, mode=self.mode, max_steps=self.max_steps, seed=tune.SEED, **opts
                )
            return cls(self, **opts)
        except ConfigError as exc:
            if exc.file is None:  # raised by the component, which knows the key but not the file
                exc.file = self._origin(exc.key or key)
                exc.args = (exc._format(),)
            raise
        except (ValueError, TypeError) as exc:
            where, reason = _option_key(entry.name, cls, str(exc)) or (key, str(exc))
            raise ConfigError(reason, file=self._origin(where), key=where) from None

    # ------------------------------------------------------------------ journal

    def _open(self, *, resume: bool, fresh: bool) -> None:
        db = self.dir / "experiment.db"
        exists = db.exists()
        if exists and not resume and not fresh:
            raise ConfigError(
                f"experiment {self.name!r} already exists in {self.dir}; pass --resume to continue it, "
                "--fresh to start over (the old folder is kept aside), or set another TUNE.NAME",
                file=self._origin("TUNE.NAME"),
                key="TUNE.NAME",
            )
        if resume and not exists:
            raise UserError(f"{self.dir}: nothing to resume (no experiment.db)")
        yaml_path = self.dir / "experiment.yaml"
        started = resume and yaml_path.is_file()
        if resume:
            journal_file.check_file(db)  # reads the header only: a damaged journal changes nothing
        if started:
            self._check_resume_config(_read_yaml(yaml_path))  # before anything in the folder is touched
        old_lock = self._move_aside() if exists and fresh and not resume else None
        try:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                if self.storage != self.dir:
                    self.storage.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                key = "OUTPUT_DIR" if not self.dir.is_dir() else "TUNE.STORAGE"
                raise ConfigError(f"cannot create the experiment folder ({exc.strerror or exc})",
                                  file=self._origin(key), key=key) from None
            if self._lock is not None:
                self._lock.acquire()
        finally:
            if old_lock is not None:
                old_lock.release()
        if not resume:
            # Written before the journal exists, so that `reidplug resume DIR` works from the
            # moment experiment.db appears.
            _atomic_write(yaml_path, to_yaml(self.cfg))
        faults.point("journal.create")
        self.journal = Journal(db)
        faults.point("journal.created")
        known = self.journal.get_meta("config")
        if resume and not started and known is not None:
            self._check_resume_config(known)  # killed between the journal and experiment.yaml (older versions)
        if not resume or known is None:
            # A run killed before its first commit leaves a journal without a config: start it anew.
            with self.journal.transaction("open"):
                self.journal.set_meta("schema", SCHEMA_VERSION)
                self.journal.set_meta("name", self.name)
                self.journal.set_meta("config", unstructure(self.cfg))
                self.journal.set_meta("created_at", time.time())
                self.journal.set_meta("trainable", self.trainable if isinstance(self.trainable, str) else _ref(self.trainable))
        if resume and not started:
            _atomic_write(yaml_path, to_yaml(self.cfg))

    def _move_aside(self) -> FolderLock:
        """--fresh: move the old experiment folder aside, holding its lock, and return the lock.

        Taking the lock first means a live run's folder is never moved: its run holds the
        lock, and this one is refused before it has changed anything.
        """
        old = FolderLock(self.dir)
        old.acquire()
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = self.dir.with_name(f"{self.dir.name}.{stamp}")
            n = 1
            while aside.exists() or (self.storage != self.dir and self.storage.with_name(aside.name).exists()):
                n += 1
                aside = self.dir.with_name(f"{self.dir.name}.{stamp}-{n}")
            os.replace(self.dir, aside)
            if self.storage != self.dir and self.storage.exists():
                os.replace(self.storage, self.storage.with_name(aside.name))
        except BaseException:
            old.release()
            raise
        return old

    def _check_resume_config(self, old: dict) -> None:
        from reidplug.core.config import flatten_keys

        new = unstructure(self.cfg)
        for key in sorted(set(flatten_keys(old)) | set(flatten_keys(new))):
            if any(key == k or key.startswith(k + ".") for k in _RESUMABLE_KEYS):
                continue
            a, b = _lookup(old, key), _lookup(new, key)
            if isinstance(a, dict) or isinstance(b, dict):
                continue
            if a != b:
                raise ConfigError(
                    f"changed since the experiment started ({a!r} -> {b!r}); resuming would mix two different "
                    "searches. Restore the old value or start a new experiment (another TUNE.NAME or --fresh)",
                    file=self._origin(key),
                    key=key,
                )

    def _restore_state(self) -> None:
        try:
            self._replay()
        except sqlite3.DatabaseError as exc:
            raise journal_file.UnreadableJournal(f"{self.journal.path}: the journal is damaged ({exc})") from None

    def _replay(self) -> None:
        self.trials = self.journal.load_trials()
        self._best = False
        # Before anything is written: a state that does not load as data stops the resume here.
        for name, component in (("searcher", self.searcher), ("scheduler", self.scheduler)):
            state = self.journal.load_state(name, self._state_types[name])
            if state is not None:
                component.load_state_dict(state)
        # Paths in the journal are data from whoever wrote the folder: only those inside it are used.
        refused = []
        for tid, _, rel in self.journal.checkpoints():
            if self._retention.path(rel) is None:
                refused.append(rel)
            else:
                self._track_checkpoint(tid, rel)
        for trial in self.trials.values():
            if trial.checkpoint and self._retention.path(trial.checkpoint) is None:
                trial.checkpoint, trial.checkpoint_step = None, 0
            trial.restore_from = None  # recomputed below from the live checkpoints
        self._next_id = max(self.trials, default=0) + 1
        self._time_used_before = float(self.journal.get_meta("time_used_s", 0.0) or 0.0)
        with self.journal.transaction("resume"):
            for rel in refused:
                self.journal.set_checkpoint_status(rel, "refused")
                self.journal.add_event("refused_path", path=rel, reason="outside the experiment folder")
            for trial in self.trials.values():
                if trial.status in (TrialStatus.RUNNING, TrialStatus.PENDING):
                    # It was running when the process died: continue from its last good checkpoint.
                    self._prepare_restart(trial, reason="resume")
                elif trial.status == TrialStatus.PAUSED:
                    trial.restore_from = self.good_checkpoint(trial)
            self.journal.add_event("resume", restarted=[t.id for t in self._restarts],
                                   restored={t.id: t.checkpoint_step if t.restore_from else 0 for t in self._restarts})
            for trial in self._restarts:
                self.journal.save_trial(trial)
        self._collect_leftovers()
        self._reconcile_outputs()

    def _collect_leftovers(self) -> None:
        """Remove what a killed process left: unlisted checkpoint folders, staging folders, temporary files."""
        keep = set()
        for status in ("live", "corrupt"):
            for _, _, rel in self.journal.checkpoints(status=status):
                path = self._retention.path(rel)
                if path is not None:
                    keep.add(path)
        names = [t.name for t in self.trials.values()]
        for path in self._retention.leftovers(names, keep):
            ckpt.remove(path)
        for folder in [self.dir, *(self.trial_dir(t) for t in self.trials.values())]:
            for path in temporary_files(folder):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _reconcile_outputs(self) -> None:
        """Give each file derived from the journal exactly one row per journaled result."""
        # results.jsonl belongs to the reporter that keeps those rows (jsonl: FILES holds "results").
        keeps_rows = any("results" in (getattr(r, "FILES", None) or ()) for r in self.reporters)
        outputs.reconcile_with_journal(self.journal, self.trials, self.dir, self.trial_dir, results_rows=keeps_rows)
        for trial in self.trials.values():
            if trial.parent is not None and self.trial_dir(trial).is_dir():
                self._write_trial_config(trial)  # the params of its last exploit

    def _snapshot(self) -> None:
        self.journal.save_state("searcher", self.searcher.state_dict(), self._state_types["searcher"])
        self.journal.save_state("scheduler", self.scheduler.state_dict(), self._state_types["scheduler"])

    # ------------------------------------------------------------------ queries

    def time_used(self) -> float:
        return self._time_used_before + (time.time() - self._started_at)

    def out_of_time(self) -> bool:
        budget = self.cfg.TUNE.TIME_BUDGET_S
        return bool(budget) and self.time_used() >= budget

    def can_create(self) -> bool:
        if self._stopped_reason or self.out_of_time():
            return False
        if getattr(self.searcher, "finished", False):
            return False
        return len(self.trials) < self.cfg.TUNE.NUM_TRIALS

    def next_trial_id(self) -> int:
        return self._next_id

    def trial_dir(self, trial: Trial) -> Path:
        path = self._trial_dirs.get(trial.id)
        if path is None:  # pathlib joins are slow enough to show in the per-trial overhead
            path = self._trial_dirs[trial.id] = self.dir / trial.name
        return path

    def active(self) -> list[Trial]:
        return [t for t in self.trials.values() if t.status in _ACTIVE]

    def best_trial(self) -> Trial | None:
        """The trial with the best last result (TUNE.METRIC, TUNE.MODE)."""
        if self._best is False:
            scored = [t for t in self.trials.values() if self._key(t) is not None]
            self._best = max(scored, key=self._key) if scored else None
        return self._best

    def _key(self, trial: Trial):
        value = trial.last_result.get(self.metric) if trial.last_result else None
        if not finite(value):
            return None
        return (value if self.mode == "max" else -value, -trial.id)

    def _update_best(self, trial: Trial) -> None:
        """Keep the best trial current without rescanning every trial on every result."""
        best = self.best_trial()
        if best is trial:
            self._best = False  # its value moved: rescan once
            return
        key = self._key(trial)
        if key is not None and (best is None or key > self._key(best)):
            self._best = trial

    def base_config_data(self) -> dict:
        if not hasattr(self, "_base_data"):
            self._base_data = unstructure(self.cfg)
        return self._base_data

    def trial_seed(self, trial: Trial) -> int:
        """A per-trial seed derived from TUNE.SEED, stable across restarts."""
        return (self.cfg.TUNE.SEED * 1_000_003 + trial.id * 7919) % (2**31 - 1)

    def device(self) -> str:
        return "cuda" if self.cfg.TUNE.RESOURCES_PER_TRIAL.GPU > 0 else "cpu"

    def trial_config(self, trial: Trial):
        """The full config a Re-ID trial trains with."""
        return with_params(self.cfg, trial.params)

    # ------------------------------------------------------------------ trials

    def create_trial(self, params: dict, *, trial_id: int | None = None, parent: int | None = None,
                     restore_from: str | None = None, step: int = 0) -> Trial:
        """Journal a new trial; a configuration the schema rejects becomes a failed trial."""
        tid = trial_id if trial_id is not None else self._next_id
        self._next_id = max(self._next_id, tid + 1)
        trial = Trial(id=tid, params=dict(params), parent=parent, restore_from=restore_from, step=step,
                      checkpoint_step=step, created_at=time.time())
        self.trials[tid] = trial
        tdir = self.trial_dir(trial)
        tdir.mkdir(parents=True, exist_ok=True)
        problem = None
        if self.is_reid:
            try:
                text = to_yaml(self.trial_config(trial))
            except ConfigError as exc:
                problem = f"rejected configuration: {exc}"
                text = to_yaml(params)
        else:
            text = to_yaml(params)
        # No temporary file needed: until the journal commits below, the trial does not exist,
        # and a restart that creates it again rewrites this file.
        with open(tdir / "config.yaml", "w") as f:
            f.write(text)
        with self.journal.transaction("create"):
            if problem:
                trial.status, trial.error = TrialStatus.ERROR, problem
                self.searcher.on_complete(tid, None, error=True)
                self.journal.add_event("rejected", tid, message=problem)
            self.journal.save_trial(trial)
            self._snapshot()
        if problem:
            _atomic_write(tdir / "error.txt", problem + "\n")
            self.scheduler.on_error(trial)
            self.hook.on_trial_error(trial=trial, error=problem)
        return trial

    def ask(self) -> Trial | None:
        """The next trial to run (a restart, a resumed pause or a new one), marked RUNNING."""
        while True:
            if self._restarts:
                trial = self._restarts.pop(0)
                if trial.status != TrialStatus.ERROR:
                    self.start(trial)
                    return trial
                continue
            if self._stopped_reason or self.out_of_time():
                return None
            # Creating a trial and marking it RUNNING share one commit: a crash in
            # between leaves no trial at all, which is as good as a fresh start.
            with self.journal.transaction("ask"):
                trial = self.scheduler.next_trial()
                if trial is not None and trial.status != TrialStatus.ERROR:
                    self._mark_running(trial)
            if trial is None:
                return None
            if trial.status != TrialStatus.ERROR:  # a rejected configuration is already reported
                self.hook.on_trial_start(trial=trial)
                return trial

    def start(self, trial: Trial) -> None:
        with self.journal.transaction("start"):
            self._mark_running(trial)
        self.hook.on_trial_start(trial=trial)

    def _mark_running(self, trial: Trial) -> None:
        if trial.status == TrialStatus.PAUSED:
            if trial.restore_from is None or self._unusable(trial.restore_from):
                trial.restore_from = self.good_checkpoint(trial)
        resumed = trial.status != TrialStatus.PENDING or trial.results
        trial.status = TrialStatus.RUNNING
        self.journal.save_trial(trial)
        if resumed:  # choosing a paused trial may have changed the scheduler's state
            self.journal.save_state("scheduler", self.scheduler.state_dict(), self._state_types["scheduler"])

    def _unusable(self, path: str) -> bool:
        inside = self._retention.path(os.path.relpath(path, self.storage))
        return inside is None or ckpt.verify(inside) is not None

    def tell(self, trial: Trial, metrics: dict, *, checkpoint: str | None = None, step: int | None = None,
             time_s: float | None = None) -> Decision:
        """Record one result and return the scheduler's decision."""
        step = trial.step + 1 if step is None else step
        if metrics.get("done") and self.metric not in metrics and trial.results:
            # The trainable ended on its own after its last real result.
            return self._stop_without_result(trial, "done")
        if step <= trial.step and trial.results:
            # A trial restarted from an older checkpoint replays steps it already reported.
            return Decision.CONTINUE
        result = dict(metrics)
        result["step"] = step
        result["trial_id"] = trial.id
        result["time_total_s"] = round((trial.last_result or {}).get("time_total_s", 0.0) + (time_s or 0.0), 4)
        result["timestamp"] = round(time.time(), 3)
        trial.step = step
        trial.restore_from = None  # consumed by the launch that produced this result
        trial.results.append(result)
        trial.last_result = result
        self._update_best(trial)
        value = result.get(self.metric)
        if not finite(value):
            what = "missing from the result" if value is None else f"not finite ({value!r})"
            message = f"metric {self.metric!r} is {what}; keys: {', '.join(sorted(metrics))}"
            with self.journal.transaction("result"):  # the result and the failure it implies
                self._record_result(trial, result, checkpoint)
                self._record_error(trial, message, "", fault=False)
            self._notify_error(trial, message)
            return Decision.STOP
        info: dict = {}
        # One transaction: the result, what the scheduler made of it, the decision, and the
        # trial state the decision implies (stopped, paused), with the components' new state.
        with self.journal.transaction("result"):
            self._record_result(trial, result, checkpoint)
            self.searcher.on_result(trial.id, result)
            decision = self.scheduler.on_result(trial, result)
            if decision != Decision.STOP and (result.get("done") or step >= self.max_steps):
                info["reason"] = "done" if result.get("done") else "max_steps"
                decision = Decision.STOP
            info.update(self.scheduler.last_info or {})
            self.scheduler.last_info = None
            self.journal.add_decision(trial.id, step, decision.value, info)
            if decision == Decision.STOP:
                self._complete(trial)
            saved = checkpoint is not None or trial.restore_from is not None  # its own, or a donor's copy
            if decision == Decision.PAUSE and saved:
                self._set_paused(trial)
            self.journal.save_trial(trial)
            if decision == Decision.PAUSE and not saved:
                self._journal_pause_before_save(trial)
            self._snapshot()
        faults.point(f"decided:{decision.value.lower()}")
        self.hook.on_trial_result(trial=trial, result=result)
        self.hook.on_trial_decision(trial=trial, result=result, decision=decision, info=info)
        if decision == Decision.STOP:
            self.scheduler.on_complete(trial)
            self.hook.on_trial_complete(trial=trial)
            self._prune_checkpoints(trial)
        elif decision == Decision.PAUSE and saved:
            self._prune_checkpoints(trial)
        return decision

    def _stop_without_result(self, trial: Trial, reason: str) -> Decision:
        info = {"reason": reason}
        with self.journal.transaction("stop"):
            self.journal.add_decision(trial.id, trial.step, Decision.STOP.value, info)
            self._complete(trial)
            self.journal.save_trial(trial)
            self._snapshot()
        self.hook.on_trial_decision(trial=trial, result=trial.last_result, decision=Decision.STOP, info=info)
        self.scheduler.on_complete(trial)
        self.hook.on_trial_complete(trial=trial)
        self._prune_checkpoints(trial)
        return Decision.STOP

    def _record_result(self, trial: Trial, result: dict, checkpoint: str | None) -> None:
        """Journal a result (inside the caller's transaction); its metrics.jsonl line follows the commit."""
        self.journal.add_result(trial.id, result["step"], result)
        if checkpoint is not None:
            self.add_checkpoint(trial, result["step"], checkpoint)
        path = self.trial_dir(trial) / "metrics.jsonl"
        self.journal.after_commit(lambda: _append_line(path, outputs.row_line(result)))

    def _complete(self, trial: Trial) -> None:
        trial.status = TrialStatus.TERMINATED
        self.searcher.on_complete(trial.id, trial.last_result, error=False)

    def _set_paused(self, trial: Trial) -> None:
        trial.status = TrialStatus.PAUSED
        # An exploit may already have pointed the trial at a copy of a donor's checkpoint.
        trial.restore_from = trial.restore_from or (str(self.storage / trial.checkpoint) if trial.checkpoint else None)
        self.journal.add_event("paused", trial.id, step=trial.step, checkpoint=trial.checkpoint)
        self._saving.discard(trial.id)

    def _journal_pause_before_save(self, trial: Trial) -> None:
        """The trial pauses once its worker has saved it; until then it holds its slot.

        The journal says PAUSED at once, restartable from the checkpoint it already has
        (or from the start, replaying its steps), so that a crash before the save arrives
        cannot let the trial run on past the decision. In memory it stays RUNNING, so
        that nobody resumes it while its worker is still saving.
        """
        self._saving.add(trial.id)
        status, restore = trial.status, trial.restore_from
        trial.status = TrialStatus.PAUSED
        trial.restore_from = str(self.storage / trial.checkpoint) if trial.checkpoint else None
        try:
            self.journal.save_trial(trial)
        finally:
            trial.status, trial.restore_from = status, restore

    def mark_paused(self, trial: Trial, checkpoint: str | None = None) -> None:
        """The trial is saved (or its save was lost: `checkpoint` None) and out of its slot."""
        if checkpoint is None and trial.id in self._saving:
            self._drop_staging(trial)
        with self.journal.transaction("pause"):
            if checkpoint is not None:
                self.add_checkpoint(trial, trial.step, checkpoint)
            self._set_paused(trial)
            self.journal.save_trial(trial)
            self._snapshot()
        self._prune_checkpoints(trial)

    def terminate(self, trial: Trial, reason: str = "stopped") -> None:
        """End a paused or pending trial that will not run again."""
        if trial.status.done:
            return
        trial.status = TrialStatus.TERMINATED
        self._saving.discard(trial.id)
        with self.journal.transaction("terminate"):
            self.searcher.on_complete(trial.id, trial.last_result, error=False)
            self.journal.add_decision(trial.id, trial.step, Decision.STOP.value, {"reason": reason})
            self.journal.save_trial(trial)
            self._snapshot()
        self.scheduler.on_complete(trial)
        self.hook.on_trial_decision(trial=trial, result=trial.last_result, decision=Decision.STOP, info={"reason": reason})
        self.hook.on_trial_complete(trial=trial)
        self._prune_checkpoints(trial)

    def fail(self, trial: Trial, message: str, traceback: str = "", *, fault: bool = False) -> bool:
        """A trial failed. A worker fault is retried from the last checkpoint; returns True if retrying."""
        self._saving.discard(trial.id)
        if fault:
            self._drop_staging(trial)
        if fault and trial.num_failures < self.cfg.TUNE.MAX_FAILURES:
            trial.num_failures += 1
            with self.journal.transaction("retry"):
                self.journal.add_event("retry", trial.id, message=message, attempt=trial.num_failures)
                self._prepare_restart(trial, reason="retry")
                self.journal.save_trial(trial)
            return True
        with self.journal.transaction("error"):
            self._record_error(trial, message, traceback, fault=fault)
        self._notify_error(trial, message)
        return False

    def _record_error(self, trial: Trial, message: str, traceback: str, *, fault: bool) -> None:
        """Journal a trial's failure (inside the caller's transaction); error.txt follows the commit."""
        trial.status, trial.error = TrialStatus.ERROR, message
        path, text = self.trial_dir(trial) / "error.txt", (traceback or message).rstrip() + "\n"
        self.journal.add_event("error", trial.id, message=message, fault=fault)
        self.searcher.on_complete(trial.id, trial.last_result, error=True)
        self.journal.save_trial(trial)
        self._snapshot()
        self.journal.after_commit(lambda: _atomic_write(path, text))

    def _notify_error(self, trial: Trial, message: str) -> None:
        self.scheduler.on_error(trial)
        self.hook.on_trial_error(trial=trial, error=message)
        self._prune_checkpoints(trial)

    def _drop_staging(self, trial: Trial) -> None:
        """A dead worker's half-written saves of `trial`: nothing will ever finish them."""
        for path in staging_leftovers(self.storage / trial.name / "checkpoints"):
            if self._retention.path(os.path.relpath(path, self.storage)) is not None:
                ckpt.remove(path)

    def _prepare_restart(self, trial: Trial, *, reason: str) -> None:
        trial.restore_from = self.good_checkpoint(trial)
        trial.status = TrialStatus.PENDING
        if trial not in self._restarts:
            self._restarts.append(trial)

    def stop_all(self, reason: str) -> None:
        """No new trials from now on (time budget, interrupt)."""
        self._stopped_reason = reason

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, trial: Trial, step: int) -> str:
        return str(self.storage / trial.name / "checkpoints" / f"step_{step:05d}")

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        """Save after `step`? Every CHECKPOINT_FREQ steps, whenever the scheduler asks, and
        after a Re-ID trial's last step (the trained model). Other trainables are not saved
        after their last step: a finished trial never resumes."""
        if self.scheduler.wants_checkpoint(trial, step):
            return True
        if step >= self.max_steps:
            return self.is_reid
        freq = self.cfg.TUNE.CHECKPOINT_FREQ
        return bool(freq) and step % freq == 0

    def add_checkpoint(self, trial: Trial, step: int, path: str) -> None:
        rel = os.path.relpath(path, self.storage)
        if self._retention.path(rel) is None:
            raise UserError(f"{path}: a checkpoint outside the experiment's folder {self.storage}")
        trial.checkpoint, trial.checkpoint_step = rel, step
        with self.journal.transaction("checkpoint"):
            self.journal.add_checkpoint(trial.id, step, rel)
            self.journal.save_trial(trial)
            self._track_checkpoint(trial.id, rel)
            self._prune_checkpoints(trial)

    def good_checkpoint(self, trial: Trial) -> str | None:
        """The newest intact checkpoint of the trial (absolute path); corrupt ones are logged and skipped.

        The trial's current checkpoint comes first: after a PBT exploit it is the donor's
        copy, which must win over the trial's own later steps.
        """
        rows = self.journal.checkpoints_newest_first(trial.id)
        rows.sort(key=lambda row: row[1] != trial.checkpoint)  # stable: the rest stay newest first
        for step, rel in rows:
            path = self._retention.path(rel)
            problem = "outside the experiment folder" if path is None else ckpt.verify(path)
            if problem is None:
                trial.checkpoint, trial.checkpoint_step = rel, step
                return str(self.storage / rel)
            with self.journal.transaction("corrupt"):
                self.journal.set_checkpoint_status(rel, "corrupt" if path is not None else "refused")
                self.journal.add_event("corrupt_checkpoint", trial.id, path=rel, problem=problem)
            self._retention.forget(trial.id, rel)
        trial.checkpoint, trial.checkpoint_step = None, 0
        return None

    def copy_checkpoint(self, donor: Trial, recipient: Trial) -> str | None:
        """Give `recipient` its own copy of the donor's newest checkpoint (PBT exploit)."""
        source = self.good_checkpoint(donor)
        if source is None:
            return None
        dest = str(self.storage / recipient.name / "checkpoints" / f"step_{donor.checkpoint_step:05d}_from_{donor.id:04d}")
        ckpt.link_copy(source, dest)
        rel = os.path.relpath(dest, self.storage)
        with self.journal.transaction("exploit"):
            self.journal.add_checkpoint(recipient.id, donor.checkpoint_step, rel)
            self.journal.add_event("exploit_copy", recipient.id, donor=donor.id, source=donor.checkpoint, path=rel)
            self._track_checkpoint(recipient.id, rel)
        recipient.checkpoint, recipient.checkpoint_step = rel, donor.checkpoint_step
        recipient.restore_from = dest
        return dest

    def exploit(self, recipient: Trial, donor: Trial, params: dict, **info) -> bool:
        """PBT's exploit: `recipient` continues from a copy of the donor's checkpoint with `params`.

        The copy holds everything the donor saved (weights, optimizer, LR schedule,
        AMP scaler, epoch). The recipient's step becomes the donor's. Returns False
        (and changes nothing) when the donor has no intact checkpoint.
        """
        dest = self.copy_checkpoint(donor, recipient)
        if dest is None:
            return False
        old = dict(recipient.params)
        recipient.params = dict(params)
        recipient.parent = donor.id
        recipient.step = donor.checkpoint_step
        recipient.restore_from = dest
        entry = {"time": round(time.time(), 3), "trial_id": recipient.id, "step": recipient.step, "donor": donor.id,
                 "donor_step": donor.checkpoint_step, "old_params": old, "new_params": recipient.params, **info}
        lineage = self.dir / "pbt_lineage.jsonl"
        with self.journal.transaction("exploit"):
            self.journal.add_event("exploit", recipient.id, **{k: v for k, v in entry.items() if k != "trial_id"})
            self.journal.save_trial(recipient)
            # Files that describe the exploit follow its commit (and are rebuilt on resume).
            self.journal.after_commit(lambda: _append_line(lineage, json.dumps(entry, default=str) + "\n"))
            self.journal.after_commit(lambda: self._write_trial_config(recipient))
        return True

    def _write_trial_config(self, trial: Trial) -> None:
        params = to_yaml(self.trial_config(trial)) if self.is_reid else to_yaml(trial.params)
        _atomic_write(self.trial_dir(trial) / "config.yaml", params)

    def _track_checkpoint(self, tid: int, rel: str) -> None:
        self._retention.track(tid, rel)

    def _needed_checkpoints(self) -> set[str]:
        needed = set()
        best = self.best_trial()
        if best is not None and best.checkpoint:
            needed.add(best.checkpoint)
        pinned = getattr(self.scheduler, "pinned_checkpoints", None)
        if pinned is not None:
            needed |= set(pinned())
        return needed

    def _prune_checkpoints(self, trial: Trial) -> None:
        """Keep the last KEEP_CHECKPOINTS of an active trial, the best trial's newest, and any a scheduler pins.

        The journal stops listing a checkpoint in the caller's transaction; its folder goes
        only once that has committed. A crash in between leaves a folder nobody lists,
        which the next resume removes.
        """
        if not self._retention.live:
            return
        keep_last = max(self.cfg.TUNE.KEEP_CHECKPOINTS, 1)
        doomed = self._retention.doomed(trial.id, self.trials, self._needed_checkpoints(), keep_last, _ACTIVE)
        if not doomed:
            return
        with self.journal.transaction("prune"):
            for tid, rel in doomed:
                self.journal.set_checkpoint_status(rel, "deleted")
                self._retention.forget(tid, rel)
                owner = self.trials.get(tid)
                if owner is not None and owner.checkpoint == rel:
                    owner.checkpoint = None
                    self.journal.save_trial(owner)
                self.journal.after_commit(lambda rel=rel: self._retention.remove(rel))

    # ------------------------------------------------------------------ the end

    def start_experiment(self) -> None:
        for reporter in self.reporters:
            if not self.pm.is_registered(reporter):
                self.pm.register(reporter, name=f"reporter:{type(reporter).__name__}:{id(reporter)}")
        self.hook.on_experiment_start(experiment=self)

    def finish(self) -> dict:
        """Write results.csv, best_config.yaml and summary.json; release the folder."""
        if self._finished:
            return self.summary()
        self._finished = True
        if self.journal is not None:
            with self.journal.transaction("end"):
                self._snapshot()
                self.journal.set_meta("time_used_s", self.time_used())
                self.journal.add_event("end", reason=self._stopped_reason or "finished")
        self.write_results_csv()
        best = self.best_trial()
        if best is not None:
            self.write_best_config(best)
        summary = self.summary()
        _atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
        try:
            self.hook.on_experiment_end(experiment=self)
        finally:
            for reporter in self.reporters:
                if self.pm.is_registered(reporter):
                    self.pm.unregister(reporter)
            self.close()
        return summary

    def close(self) -> None:
        self.searcher.close()
        if self.journal is not None:
            self.journal.close()
        if self._lock is not None:
            self._lock.release()

    def write_best_config(self, best: Trial) -> Path:
        path = self.dir / "best_config.yaml"
        if self.is_reid:
            cfg = with_params(self.cfg, best.params)
            data = unstructure(cfg)
            data["OUTPUT_DIR"] = str(self.dir / "best")
            header = (
                f"# Best trial {best.id} of experiment {self.name!r}: {self.metric}={best.last_result[self.metric]:.4f}\n"
                f"# Train it with: reidplug train {path}\n"
            )
            _atomic_write(path, header + to_yaml(data))
        else:
            _atomic_write(path, to_yaml({"trial": best.id, self.metric: best.last_result[self.metric], "params": best.params}))
        return path

    def write_results_csv(self) -> Path:
        path = self.dir / "results.csv"
        rows = [self.trial_row(t) for t in sorted(self.trials.values(), key=lambda t: t.id)]
        columns: list[str] = ["trial_id", "status", "step", self.metric, f"best_{self.metric}"]
        for row in rows:
            columns += [c for c in row if c not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        _atomic_write(path, buf.getvalue())
        return path

    def trial_row(self, trial: Trial) -> dict:
        row: dict[str, Any] = {
            "trial_id": trial.id,
            "status": trial.status.value,
            "step": trial.step,
            self.metric: trial.metric(self.metric),
            f"best_{self.metric}": trial.best(self.metric, self.mode),
        }
        for key, value in (trial.last_result or {}).items():
            if key not in row and isinstance(value, (int, float, str, bool)) and key not in ("trial_id",):
                row[key] = value
        for key, value in trial.params.items():
            row[f"param:{key}"] = value
        row["parent"] = trial.parent if trial.parent is not None else ""
        row["error"] = trial.error or ""
        return row

    def summary(self) -> dict:
        best = self.best_trial()
        counts: dict[str, int] = {}
        for t in self.trials.values():
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
        return {
            "name": self.name,
            "dir": str(self.dir),
            "metric": self.metric,
            "mode": self.mode,
            "num_trials": len(self.trials),
            "status": counts,
            "best_trial": best.id if best else None,
            "best_result": best.last_result if best else None,
            "best_params": best.params if best else None,
            "time_used_s": round(self.time_used(), 3),
            "disk_bytes": ckpt.disk_usage(self.dir) if self.dir.exists() else 0,
            "stopped_reason": self._stopped_reason,
        }


def _option_key(name: str, cls: Any, message: str) -> tuple[str, str] | None:
    """(TUNE.<NAME>.<OPTION>, reason) for a component's message that names one of its options
    ("REDUCTION_FACTOR must be at least 2"), so that the error points at the option's key."""
    options = getattr(cls, "OPTIONS", None) or {}
    for word in re.findall(r"[A-Z][A-Z0-9_]+", message):
        if word in options:
            key = f"TUNE.{name.upper()}.{word}"
            return key, message[len(key):].lstrip(": ") if message.startswith(key + " ") else message
    return None


def _ref(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _lookup(data: dict, key: str):
    try:
        return get_dotted(data, key)
    except (KeyError, TypeError, AttributeError):
        return None


_atomic_write = outputs.atomic_write


def _append_line(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); it records the experiment's config") from None
    return data if isinstance(data, dict) else {}


def _importable_ref(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"

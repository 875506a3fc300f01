"""An experiment: trials, searcher, scheduler and journal, driven by ask/tell.

The Tuner drives an Experiment with an executor; an application that owns its
training loop (TUNE.TRAINABLE: external) drives it directly, one tell() per step::

    exp = Experiment("search.yml")
    while (trial := exp.ask()) is not None:          # None: nothing left to start
        model = MyModel(**trial.params)
        if trial.restore_from:
            model.load(trial.restore_from)
        decision = "CONTINUE"
        while decision == "CONTINUE":
            decision = exp.tell(trial, model.train_one_step())
        if decision == "PAUSE":
            exp.mark_paused(trial, exp.save_checkpoint(trial, model.save))
    summary = exp.finish()

Building the components, opening the folder, resuming, checkpoints and the
result files live in components.py, folder.py, replay.py, trial_checkpoints.py
and results.py; this module holds the trial table and the ask/tell path.
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Any, Callable

from reidplug.core import checkpoints as ckpt
from reidplug.core import components, faults, folder, outputs, plugin_faults, replay, results, trial_checkpoints
from reidplug.core.config import Origins, load_config, to_yaml, unstructure, with_params
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.journal import Journal, finite
from reidplug.core.lock import FolderLock
from reidplug.core.manager import plugin_manager
from reidplug.core.plugin_faults import PluginFault
from reidplug.core.preflight import check_name, check_tune, check_writable_folder
from reidplug.core.retention import Retention
from reidplug.core.space import SearchSpace
from reidplug.core.state import declared_types
from reidplug.core.trainable import prepare_trainable
from reidplug.core.trial import Decision, Trial, TrialStatus

_ACTIVE = (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)


def _contained(method):
    """An exception that a plugin's component raises inside `method` stops the search as a PluginFault."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            fault = plugin_faults.blame(exc, self.components)
            if fault is None:
                raise
            self._stop_for(fault)
            raise fault from exc

    return run


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
        self.components: list = []  # (component, plugin_faults.Owner): whose code a fault is blamed on
        self.hook = self.pm.hook
        tune = cfg.TUNE
        self.trainable = trainable if trainable is not None else tune.TRAINABLE
        self.is_reid = trainable is None and tune.TRAINABLE == "reid"
        self.launch_trainable: str | None = None  # set by _check_trainable when it can
        components.check_trainable(self)
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
        components.check_points(self)
        # 0 for a function trainable: it runs until it returns.
        self.max_steps = tune.MAX_STEPS or components.default_max_steps(self)
        components.check_sections(self)
        executor = self.component("executor", tune.EXECUTOR, "TUNE.EXECUTOR").load()
        preflight = getattr(executor, "preflight", None)
        if preflight is not None and not dry_run:
            preflight(self)  # executor settings checked before anything is written
        self.searcher = components.build(self, "searcher", tune.SEARCHER)
        self.scheduler = components.build(self, "scheduler", tune.SCHEDULER)
        self.reporters = reporters if reporters is not None else [components.build(self, "reporter", n) for n in tune.REPORTERS]
        # The classes besides plain data that each component's journaled state may hold.
        self._state_types = {"searcher": declared_types(self.searcher), "scheduler": declared_types(self.scheduler)}

        self.trials: dict[int, Trial] = {}
        self._best: Trial | None | bool = None  # False: needs a rescan
        self._retention = Retention(self.storage)
        self._saving: set[int] = set()  # paused by a decision, their checkpoint still being saved
        self._next_id = 1
        self._restarts: list[Trial] = []
        self._running: set[int] = set()  # ids marked RUNNING here; running() drops those that moved on
        self._last_told: dict[int, int] = {}  # trial id -> the step its latest tell() was (the default next one)
        self._started_at = time.time()
        self._time_used_before = 0.0
        self._stopped_reason: str | None = None
        self._finished = False
        self._reporting = False  # reporters registered and told the experiment started
        self.fault: PluginFault | None = None  # set when a plugin's component raised; the search stops
        self.journal: Journal | None = None
        self._lock = FolderLock(self.dir) if lock and not dry_run else None
        if dry_run:
            return  # everything is built and checked; nothing is written
        if prepare:
            # Shared inputs (a dataset cache) are built here, once, and a bad one is refused
            # before the experiment folder exists.
            prepare_trainable(self.trainable_for_workers(), cfg)
        try:
            folder.open_folder(self, resume=resume, fresh=fresh)
            self.scheduler.setup(self)
            if resume:
                replay.restore(self)
        except BaseException as exc:
            self.close()
            fault = plugin_faults.blame(exc, self.components) if isinstance(exc, Exception) else None
            if fault is not None:
                raise fault from exc
            raise

    # ------------------------------------------------------------------ building

    def trainable_for_workers(self) -> Any:
        """What a LaunchSpec carries: an import reference where one exists, else the name or object."""
        return self.launch_trainable or self.trainable

    def _origin(self, key: str) -> str | None:
        return getattr(self.cfg, "origins", Origins()).of(key)

    def component(self, kind: str, name: str, key: str):
        """The registry entry for `name`; an unknown name is an error naming the file and key."""
        return components.entry(self, kind, name, key)

    def options(self, name: str, cls: Any) -> dict:
        """The options of component `name` (class `cls`) from its section `TUNE.<NAME>`, checked."""
        return components.options(self, name, cls)

    # ------------------------------------------------------------------ journal

    def _snapshot(self) -> None:
        self.journal.save_state("searcher", self.searcher.state_dict(), self._state_types["searcher"])
        self.journal.save_state("scheduler", self.scheduler.state_dict(), self._state_types["scheduler"])

    # ------------------------------------------------------------------ queries

    def time_used(self) -> float:
        """Seconds this experiment has run, all its runs together."""
        return self._time_used_before + (time.time() - self._started_at)

    def out_of_time(self) -> bool:
        """Whether TUNE.TIME_BUDGET_S (counted over every run of a resumed experiment) is spent."""
        budget = self.cfg.TUNE.TIME_BUDGET_S
        return bool(budget) and self.time_used() >= budget

    def can_create(self) -> bool:
        """Whether a scheduler may create another trial (budget of trials and time, searcher not finished)."""
        if self._stopped_reason or self.out_of_time():
            return False
        if getattr(self.searcher, "finished", False):
            return False
        return len(self.trials) < self.cfg.TUNE.NUM_TRIALS

    def next_trial_id(self) -> int:
        """The id the next created trial gets."""
        return self._next_id

    def trial_dir(self, trial: Trial) -> Path:
        """The trial's folder in the experiment folder (config.yaml, metrics.jsonl, log.txt)."""
        path = self._trial_dirs.get(trial.id)
        if path is None:  # pathlib joins are slow enough to show in the per-trial overhead
            path = self._trial_dirs[trial.id] = self.dir / trial.name
        return path

    def active(self) -> list[Trial]:
        """The trials not yet ended: PENDING, RUNNING or PAUSED."""
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
        """The experiment's whole config as plain data (what trial workers receive)."""
        if not hasattr(self, "_base_data"):
            self._base_data = unstructure(self.cfg)
        return self._base_data

    def trial_seed(self, trial: Trial) -> int:
        """A per-trial seed derived from TUNE.SEED, stable across restarts."""
        return (self.cfg.TUNE.SEED * 1_000_003 + trial.id * 7919) % (2**31 - 1)

    def device(self) -> str:
        """"cuda" when TUNE.RESOURCES_PER_TRIAL.GPU asks for a GPU, else "cpu"."""
        return "cuda" if self.cfg.TUNE.RESOURCES_PER_TRIAL.GPU > 0 else "cpu"

    def trial_config(self, trial: Trial):
        """The full config a Re-ID trial trains with."""
        return with_params(self.cfg, trial.params)

    # ------------------------------------------------------------------ trials

    @_contained
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
            outputs.atomic_write(tdir / "error.txt", problem + "\n")
            self.scheduler.on_error(trial)
            self.hook.on_trial_error(trial=trial, error=problem)
        return trial

    @_contained
    def ask(self) -> Trial | None:
        """The next trial to run, marked RUNNING: a restart, a resumed pause or a new one.

        Returns None when TUNE.MAX_CONCURRENT trials are RUNNING (tell them to their end
        first), or when nothing is left to start (TUNE.NUM_TRIALS created, the time budget
        spent, the search stopped). The first call starts the reporters. A trial with
        `restore_from` set continues from that checkpoint, at step `checkpoint_step`.
        """
        self.start_experiment()
        while True:
            if len(self.running()) >= self.cfg.TUNE.MAX_CONCURRENT:
                return None
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

    def running(self) -> list[Trial]:
        """The trials RUNNING now (asked and not yet told to their end)."""
        self._running = {tid for tid in self._running if self.trials[tid].status == TrialStatus.RUNNING}
        return [self.trials[tid] for tid in sorted(self._running)]

    @_contained
    def start(self, trial: Trial) -> None:
        """Mark a PENDING or PAUSED trial RUNNING (journaled) and tell the reporters; ask() does this."""
        with self.journal.transaction("start"):
            self._mark_running(trial)
        self.hook.on_trial_start(trial=trial)

    def _mark_running(self, trial: Trial) -> None:
        if trial.status == TrialStatus.PAUSED:
            if trial.restore_from is None or trial_checkpoints.unusable(self, trial.restore_from):
                trial.restore_from = self.good_checkpoint(trial)
        resumed = trial.status != TrialStatus.PENDING or trial.results
        trial.status = TrialStatus.RUNNING
        self._running.add(trial.id)
        # Where its steps start again: the checkpoint it restores, or the beginning (steps it
        # had already reported are then replayed, and not recorded twice).
        self._last_told[trial.id] = trial.checkpoint_step if trial.restore_from else 0
        self.journal.save_trial(trial)
        if resumed:  # choosing a paused trial may have changed the scheduler's state
            self.journal.save_state("scheduler", self.scheduler.state_dict(), self._state_types["scheduler"])

    @_contained
    def tell(self, trial: Trial, metrics: dict, *, checkpoint: str | None = None, step: int | None = None,
             time_s: float | None = None) -> Decision:
        """Record the result of one step of a RUNNING trial; returns the scheduler's decision.

        Call it once per step; `step` defaults to the one after the last told, counted
        from `trial.checkpoint_step` when the trial was handed out with `restore_from`,
        else from 0 (a restarted trial's replayed steps are not recorded twice). CONTINUE: run the
        next step. STOP: the trial is over (TERMINATED), which it always is after
        TUNE.MAX_STEPS steps or a result with `done: True`; the searcher and the reporters
        have been told. PAUSE: save the trial (`save_checkpoint`) and call `mark_paused`;
        ask() hands it out again later with `restore_from` set. `checkpoint` is the folder
        of a checkpoint saved after this step, `time_s` the seconds the step took.
        """
        if trial.status != TrialStatus.RUNNING or self.trials.get(trial.id) is not trial:
            raise UserError(f"trial {trial.id} is {trial.status.value}, not RUNNING: tell() takes the trials "
                            "that ask() returned, until a decision other than CONTINUE")
        step = self._last_told.get(trial.id, trial.step) + 1 if step is None else step
        self._last_told[trial.id] = step
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
            if decision != Decision.STOP and (result.get("done") or (self.max_steps and step >= self.max_steps)):
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
            trial_checkpoints.prune(self, trial)
        elif decision == Decision.PAUSE and saved:
            trial_checkpoints.prune(self, trial)
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
        trial_checkpoints.prune(self, trial)
        return Decision.STOP

    def _record_result(self, trial: Trial, result: dict, checkpoint: str | None) -> None:
        """Journal a result (inside the caller's transaction); its metrics.jsonl line follows the commit."""
        self.journal.add_result(trial.id, result["step"], result)
        if checkpoint is not None:
            self.add_checkpoint(trial, result["step"], checkpoint)
        path = self.trial_dir(trial) / "metrics.jsonl"
        self.journal.after_commit(lambda: results.append_line(path, outputs.row_line(result)))

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

    @_contained
    def mark_paused(self, trial: Trial, checkpoint: str | None = None) -> None:
        """After tell() returned PAUSE: the trial is saved at `checkpoint` (None: its save was lost)
        and out of its slot; ask() hands it out again when the scheduler resumes it."""
        if checkpoint is None and trial.id in self._saving:
            trial_checkpoints.drop_staging(self, trial)
        with self.journal.transaction("pause"):
            if checkpoint is not None:
                self.add_checkpoint(trial, trial.step, checkpoint)
            self._set_paused(trial)
            self.journal.save_trial(trial)
            self._snapshot()
        trial_checkpoints.prune(self, trial)

    @_contained
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
        trial_checkpoints.prune(self, trial)

    @_contained
    def fail(self, trial: Trial, message: str, traceback: str = "", *, fault: bool = False) -> bool:
        """A trial failed. A worker fault is retried from the last checkpoint; returns True if retrying."""
        self._saving.discard(trial.id)
        if fault:
            trial_checkpoints.drop_staging(self, trial)
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
        self.journal.after_commit(lambda: outputs.atomic_write(path, text))

    def _notify_error(self, trial: Trial, message: str) -> None:
        self.scheduler.on_error(trial)
        self.hook.on_trial_error(trial=trial, error=message)
        trial_checkpoints.prune(self, trial)

    def _prepare_restart(self, trial: Trial, *, reason: str) -> None:
        trial.restore_from = self.good_checkpoint(trial)
        trial.status = TrialStatus.PENDING
        if trial not in self._restarts:
            self._restarts.append(trial)

    def stop_all(self, reason: str) -> None:
        """No new trials from now on (time budget, interrupt)."""
        self._stopped_reason = reason

    def _stop_for(self, fault: PluginFault) -> None:
        """A component failed: nothing more runs; finish() writes what the journal holds."""
        if self.fault is not None:
            return
        self.fault = fault
        self.stop_all(f"plugin fault: {fault.component}")
        where = self.dir / "plugin_error.txt"
        with contextlib.suppress(OSError):
            outputs.atomic_write(where, fault.detail)
        fault.args = (f"{fault.args[0]}; the search stopped: results so far in {self.dir}/results.csv, the "
                      f"traceback in {where}; once the plugin is fixed, `reidplug resume {self.dir}` continues it",)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, trial: Trial, step: int) -> str:
        """The folder of the trial's checkpoint after `step` (inside TUNE.STORAGE or the experiment folder)."""
        return trial_checkpoints.path_for(self, trial, step)

    def save_checkpoint(self, trial: Trial, write: Callable[[str], Any], step: int | None = None) -> str:
        """Save a checkpoint of `trial` after `step` (default: the last step told) and return its folder.

        `write(folder)` fills an empty folder, which becomes the checkpoint at once with a
        manifest of its files (verified before a restore). Pass the result to `tell(...,
        checkpoint=)` (the step being told) or to `mark_paused` (after a PAUSE).
        """
        path = self.checkpoint_path(trial, trial.step if step is None else step)
        staging = ckpt.staging_dir(path)
        staging.mkdir(parents=True, exist_ok=True)
        write(str(staging))
        ckpt.finalize(staging, path)
        return path

    def wants_checkpoint(self, trial: Trial, step: int) -> bool:
        """Save after `step`? Every CHECKPOINT_FREQ steps, whenever the scheduler asks, and
        after a Re-ID trial's last step (the trained model). Other trainables are not saved
        after their last step: a finished trial never resumes."""
        return trial_checkpoints.wants(self, trial, step)

    def add_checkpoint(self, trial: Trial, step: int, path: str) -> None:
        """Record the checkpoint folder `path` (inside the experiment's storage) as the trial's after `step`."""
        return trial_checkpoints.add(self, trial, step, path)

    def good_checkpoint(self, trial: Trial) -> str | None:
        """The newest intact checkpoint of the trial (absolute path); corrupt ones are logged and skipped.

        The trial's current checkpoint comes first: after a PBT exploit it is the donor's
        copy, which must win over the trial's own later steps.
        """
        return trial_checkpoints.newest_intact(self, trial)

    def copy_checkpoint(self, donor: Trial, recipient: Trial) -> str | None:
        """Give `recipient` its own copy of the donor's newest checkpoint (PBT exploit)."""
        return trial_checkpoints.copy_from(self, donor, recipient)

    @_contained
    def exploit(self, recipient: Trial, donor: Trial, params: dict, **info) -> bool:
        """PBT's exploit: `recipient` continues from a copy of the donor's checkpoint with `params`.

        The copy holds everything the donor saved (weights, optimizer, LR schedule,
        AMP scaler, epoch). The recipient's step becomes the donor's. Returns False
        (and changes nothing) when the donor has no intact checkpoint.
        """
        return trial_checkpoints.exploit(self, recipient, donor, params, **info)

    # ------------------------------------------------------------------ the end

    @_contained
    def start_experiment(self) -> None:
        """Register the reporters and call `on_experiment_start`; done by the first ask() if not before."""
        if self._reporting:
            return
        self._reporting = True
        for reporter in self.reporters:
            if not self.pm.is_registered(reporter):
                self.pm.register(reporter, name=f"reporter:{type(reporter).__name__}:{id(reporter)}")
        self.hook.on_experiment_start(experiment=self)

    def finish(self) -> dict:
        """End the search: write results.csv, best_config.yaml and summary.json, call
        `on_experiment_end`, release the folder; returns the summary.

        Trials still RUNNING (not told to their end) stay RUNNING in the journal and
        continue from their last checkpoint on resume. After a plugin fault the files
        hold what the journal holds, which is what a resume continues from.
        """
        if self._finished:
            return results.summary(self)
        self._finished = True
        try:
            if self.journal is not None:
                if self.fault is not None:
                    # The faulty component's state may be half-updated: the journal keeps its last good one.
                    self.trials, self._best = self.journal.load_trials(), False
                with self.journal.transaction("end"):
                    if self.fault is None:
                        self._snapshot()
                    self.journal.set_meta("time_used_s", self.time_used())
                    self.journal.add_event("end", reason=self._stopped_reason or "finished")
            summary = results.write_all(self)
            self.start_experiment()
            try:
                self.hook.on_experiment_end(experiment=self)
            except Exception:
                if self.fault is None:
                    raise  # after a fault, the fault is the error to report
        finally:
            self.close()
        return summary

    def close(self) -> None:
        """Release the journal, the folder lock and the reporters without writing results (see finish)."""
        for reporter in self.reporters:
            if self.pm.is_registered(reporter):
                self.pm.unregister(reporter)
        self.searcher.close()
        if self.journal is not None:
            self.journal.close()
        if self._lock is not None:
            self._lock.release()

    def write_results_csv(self) -> Path:
        """results.csv: one row per trial (status, step, metric, best metric, last result, params)."""
        return results.write_results_csv(self)

    def write_best_config(self, best: Trial) -> Path:
        """best_config.yaml for `best`: for Re-ID a config that `reidplug train` runs as is."""
        return results.write_best_config(self, best)

    def trial_row(self, trial: Trial) -> dict:
        """The trial's row of results.csv, as a dict."""
        return results.trial_row(self, trial)

    def summary(self) -> dict:
        """What summary.json holds: counts by status, the best trial, time and disk used."""
        return results.summary(self)

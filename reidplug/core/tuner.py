"""The experiment loop: an Experiment driven through an executor.

    journal.open(dir); replay it if resuming
    while not finished:
        while executor has a free slot and (trial := experiment.ask()):
            executor.launch(trial)                     # new, resumed, retried or exploited
        for event in executor.poll():                  # result | saved | error
            decision = experiment.tell(trial, result)  # journaled, then acted on
            executor.step / save / release             # continue / pause / stop
    write best_config.yaml, results.csv, summary
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from reidplug.core.executor import ErrorEvent, LaunchSpec, ResultEvent, SavedEvent
from reidplug.core import components
from reidplug.core.experiment import Experiment
from reidplug.core.plugin_faults import PluginFault
from reidplug.core.plural import plural
from reidplug.core.trainable import TrialContext
from reidplug.core.trial import Decision, Trial, TrialStatus


class Tuner:
    """Runs a search: `Tuner("search.yml").run()` returns the experiment summary."""

    def __init__(self, config, overrides=(), *, trainable: Any = None, resume: bool = False, fresh: bool = False,
                 reporters: list | None = None, executor: Any = None):
        self.experiment = Experiment(config, overrides, trainable=trainable, resume=resume, fresh=fresh,
                                     reporters=reporters, prepare=True)
        self.executor = executor if executor is not None else self._build_executor()
        self._pausing: set[int] = set()
        self._interrupted = False

    def _build_executor(self):
        exp = self.experiment
        tune = exp.cfg.TUNE
        resources = {"cpu": tune.RESOURCES_PER_TRIAL.CPU, "gpu": tune.RESOURCES_PER_TRIAL.GPU}
        try:
            entry = exp.component("executor", tune.EXECUTOR, "TUNE.EXECUTOR")
            cls = entry.load()
            kwargs = dict(max_concurrent=tune.MAX_CONCURRENT, resources=resources, experiment_dir=str(exp.dir),
                          **exp.options(entry.name, cls))
            return components.construct(exp, "executor", entry, cls, (exp,), kwargs, key="TUNE.EXECUTOR")
        except Exception:
            exp.close()
            raise

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        """Run to the end, or until interrupted (Ctrl-C / SIGINT): then running trials stay RUNNING
        in the journal, to continue from their last checkpoint on resume. A second interrupt
        raises KeyboardInterrupt at once; the journal still holds everything committed.

        When a plugin's searcher, scheduler or reporter raises, the trials are stopped, the
        results so far written (results.csv, summary.json) and a PluginFault (exit code 2
        from the command line) names the plugin; the experiment resumes like an interrupted one.
        """
        exp, executor = self.experiment, self.executor
        previous = signal.getsignal(signal.SIGINT)
        if _main_thread():
            signal.signal(signal.SIGINT, self._on_interrupt)
        try:
            exp.start_experiment()
            executor.start()
            self._loop()
            if self._interrupted:
                print(f"[reidplug] interrupted: stopping {plural(len(executor.running()), 'running trial')}; "
                      "they continue from their last checkpoint on resume (Ctrl-C again to quit at once)",
                      file=sys.stderr, flush=True)
            executor.shutdown()
        except PluginFault:
            executor.abort()
            exp.finish()
            raise
        except BaseException:
            executor.abort()
            exp.close()  # release the journal and the folder lock for whoever embeds the tuner
            raise
        finally:
            if _main_thread():
                signal.signal(signal.SIGINT, previous)
        if self._interrupted:
            exp.stop_all("interrupted")
        return exp.finish()

    @property
    def interrupted(self) -> bool:
        """True once an interrupt asked this run to stop."""
        return self._interrupted

    def _on_interrupt(self, signum, frame):
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True

    def _loop(self) -> None:
        exp, executor = self.experiment, self.executor
        while not self._interrupted:
            if exp.out_of_time():
                self._stop_running("time budget")
                break
            launched = self._launch_what_fits()
            if not executor.running():
                if launched:
                    continue
                if not exp.scheduler.is_finished():
                    # Nothing runs and nothing can start: end paused trials rather than wait forever.
                    for trial in exp.active():
                        exp.terminate(trial, reason="nothing left to run")
                break
            for event in executor.poll(timeout=0.5):
                self._handle(event)

    def _launch_what_fits(self) -> int:
        exp, executor = self.experiment, self.executor
        launched = 0
        while executor.free_slots() > 0:
            trial = exp.ask()
            if trial is None:
                break
            self._launch(trial)
            launched += 1
        return launched

    def _launch(self, trial: Trial) -> None:
        exp = self.experiment
        restore = trial.restore_from
        start_step = trial.checkpoint_step if restore else 0
        if not restore and trial.step:
            # No usable checkpoint: the trial starts over and replays its steps.
            start_step = 0
        context = TrialContext(
            trial_id=trial.id,
            trial_dir=str(exp.trial_dir(trial)),
            experiment_dir=str(exp.dir),
            base_config=exp.base_config_data(),
            seed=exp.trial_seed(trial),
            step_epochs=exp.cfg.TUNE.STEP_EPOCHS,
            max_steps=exp.max_steps,
            device=exp.device(),
            restore_from=restore,
            start_step=start_step,
        )
        spec = LaunchSpec(trial.id, exp.trainable_for_workers(), dict(trial.params), context)
        save_to = exp.checkpoint_path(trial, start_step + 1) if exp.wants_checkpoint(trial, start_step + 1) else None
        self.executor.launch(spec, save_to=save_to)

    # ------------------------------------------------------------------ events

    def _handle(self, event) -> None:
        exp, executor = self.experiment, self.executor
        trial = exp.trials.get(event.trial_id)
        if trial is None or trial.status != TrialStatus.RUNNING:
            return
        if isinstance(event, ResultEvent):
            step = event.step if event.step is not None else trial.step + 1
            decision = exp.tell(trial, event.metrics, checkpoint=event.checkpoint, step=step, time_s=event.time_s)
            if trial.status == TrialStatus.ERROR:
                executor.release(trial.id)
            elif decision == Decision.CONTINUE:
                nxt = step + 1  # the worker's next step, also when it replays old ones
                save_to = exp.checkpoint_path(trial, nxt) if exp.wants_checkpoint(trial, nxt) else None
                executor.step(trial.id, save_to=save_to)
            elif decision == Decision.PAUSE:
                if trial.status == TrialStatus.PAUSED:
                    executor.release(trial.id)
                else:
                    self._pausing.add(trial.id)
                    executor.save(trial.id, exp.checkpoint_path(trial, trial.step))
            else:
                executor.release(trial.id)
        elif isinstance(event, SavedEvent):
            if trial.id in self._pausing:
                self._pausing.discard(trial.id)
                exp.mark_paused(trial, event.checkpoint)
                executor.release(trial.id)
            else:
                exp.add_checkpoint(trial, trial.step, event.checkpoint)
        elif isinstance(event, ErrorEvent):
            pausing = trial.id in self._pausing
            self._pausing.discard(trial.id)
            executor.release(trial.id)
            if pausing and event.fault:
                # The worker died saving a trial that its scheduler paused: it stays paused, to
                # restart from its previous checkpoint, rather than run on past the decision.
                exp.mark_paused(trial, None)
            else:
                exp.fail(trial, event.message, event.traceback, fault=event.fault)

    def _stop_running(self, reason: str) -> None:
        exp = self.experiment
        exp.stop_all(reason)
        for tid in list(self.executor.running()):
            self.executor.release(tid)
            exp.terminate(exp.trials[tid], reason=reason)
        for trial in exp.active():
            exp.terminate(trial, reason=reason)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run(config, overrides=(), **kwargs) -> dict:
    """Shorthand for Tuner(config, overrides, **kwargs).run()."""
    return Tuner(config, overrides, **kwargs).run()


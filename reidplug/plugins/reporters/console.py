"""Console view of an experiment: a live table on a terminal, throttled plain lines in logs, quiet mode."""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from reidplug.core.errors import ConfigError
from reidplug.core.hookspecs import hookimpl
from reidplug.core.plural import plural
from reidplug.core.reporter import Reporter

PREFIX = "[reidplug]"
# Result keys shown as a trial's training progress, first match wins.
LOSS_KEYS = ("loss", "total_loss", "train_loss")
SPEED_KEYS = (("iter_per_s", "it/s"), ("it_per_s", "it/s"), ("images_per_s", "img/s"))
DONE_REASONS = ("max_steps", "done", "max_t")  # max_t: ASHA's name for a trial that used its whole budget


@dataclass
class _TrialView:
    """What the console knows of one trial."""

    id: int
    params: dict
    state: str = "pending"  # pending, running, paused, stopped, done, failed
    step: int = 0
    last: dict = field(default_factory=dict)
    best: float | None = None
    reason: str = ""
    fresh: bool = False  # reported since the last plain status block


class ConsoleReporter(Reporter):
    """Shows running, paused, stopped and finished trials, the best so far and an ETA."""

    OPTIONS = {"QUIET": False, "EVERY_S": 10.0, "LIVE": "auto", "MAX_ROWS": 20}

    def __init__(self, experiment, *, quiet: bool = False, every_s: float = 10.0, live: str = "auto",
                 max_rows: int = 20, out: TextIO | None = None, err: TextIO | None = None):
        super().__init__(experiment)
        if str(live).lower() not in ("auto", "on", "off"):
            raise ConfigError(f"must be auto, on or off, got {live!r}", key=f"{self.section}.LIVE")
        if every_s < 0:
            raise ConfigError(f"must be >= 0, got {every_s}", key=f"{self.section}.EVERY_S")
        if max_rows < 1:
            raise ConfigError(f"must be >= 1, got {max_rows}", key=f"{self.section}.MAX_ROWS")
        self.quiet = quiet
        self.every_s = float(every_s)
        self.live_option = str(live).lower()
        self.max_rows = int(max_rows)
        self._out, self._err = out, err
        self.mode = "quiet" if quiet else None  # decided when the experiment starts
        self.views: dict[int, _TrialView] = {}
        self._started = time.time()
        self._launched = False
        self._ended_here = 0  # trials ended since this process started: the rate behind the ETA
        self._steps_here = 0
        self._last_block = 0.0
        self._live = None
        self._lock = threading.Lock()
        self._rows: list[tuple] = []
        self._hidden = 0
        self._parts: tuple | None = None

    # ------------------------------------------------------------------ streams and modes

    @property
    def out(self) -> TextIO:
        return self._out if self._out is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err if self._err is not None else sys.stderr

    def _choose_mode(self) -> str:
        if self.quiet:
            return "quiet"
        if self.live_option == "on":
            return "live"
        if self.live_option == "off":
            return "plain"
        try:
            tty = self.out.isatty()
        except (AttributeError, ValueError):
            tty = False
        return "live" if tty and os.environ.get("TERM") != "dumb" else "plain"

    def _say(self, text: str) -> None:
        if self.mode == "plain":
            print(f"{PREFIX} {text}", file=self.out, flush=True)
        elif self.mode == "live" and self._live is not None:
            self._live.console.print(f"{PREFIX} {text}", markup=False, highlight=False)

    def _error(self, text: str) -> None:
        if self.mode == "live" and self._live is not None:
            self._live.console.print(f"{PREFIX} {text}", style="red", markup=False, highlight=False)
        else:
            print(f"{PREFIX} {text}", file=self.err, flush=True)

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def on_experiment_start(self, experiment):
        self.experiment = experiment
        self.mode = self._choose_mode()
        self._started = time.time()
        self._load_existing(experiment)
        tune = experiment.cfg.TUNE
        limits = f"up to {plural(tune.NUM_TRIALS, 'trial')}"
        if tune.TIME_BUDGET_S:
            limits += f" or {_duration(tune.TIME_BUDGET_S)}"
        self._say(
            f"experiment {experiment.name!r} in {experiment.dir}: {limits}, searcher {tune.SEARCHER}, "
            f"scheduler {tune.SCHEDULER}, {tune.MAX_CONCURRENT} at a time"
        )
        if self.mode == "live":
            self._start_live()

    def _load_existing(self, experiment) -> None:
        """A resumed experiment: its trials, and why the finished ones ended."""
        reasons: dict[int, str] = {}
        journal = getattr(experiment, "journal", None)
        if journal is not None and experiment.trials:
            for d in journal.decisions():
                if d["decision"] == "STOP":
                    reasons[d["trial_id"]] = (d.get("info") or {}).get("reason", "")
        for trial in experiment.trials.values():
            view = self._view(trial)
            view.reason = reasons.get(trial.id, "")
            view.state = _state(trial.status.value, view.reason)
            for result in trial.results:
                self._note_result(view, result)
        self._snapshot()

    def _view(self, trial) -> _TrialView:
        view = self.views.get(trial.id)
        if view is None:
            view = self.views[trial.id] = _TrialView(trial.id, dict(trial.params))
        view.params = dict(trial.params)
        view.step = trial.step
        return view

    def _note_result(self, view: _TrialView, result: dict) -> None:
        view.last = result
        value = result.get(self.experiment.metric)
        if _finite(value) and (view.best is None or self._better(value, view.best)):
            view.best = float(value)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.experiment.mode == "max" else a < b

    @hookimpl
    def on_trial_start(self, trial):
        if not self._launched:
            # The rate behind the ETA counts from the first launch, not from the setup before it.
            self._launched, self._started = True, time.time()
        view = self._view(trial)
        resumed = view.state == "paused" or bool(trial.results)
        view.state = "running"
        if resumed and trial.restore_from:
            self._say(f"trial {trial.id} resumed at step {trial.checkpoint_step}: {_params(trial.params)}")
        elif resumed:
            # No checkpoint to continue from (a function trainable has none): it runs from the start
            # again, and the steps it already reported are not recorded twice.
            self._say(f"trial {trial.id} restarted from step 0 (no checkpoint), {plural(trial.step, 'step')} "
                      f"already recorded: {_params(trial.params)}")
        else:
            self._say(f"trial {trial.id} started: {_params(trial.params)}")
        self._snapshot()

    @hookimpl
    def on_trial_result(self, trial, result):
        view = self._view(trial)
        view.state = "running"
        view.fresh = True
        self._note_result(view, result)
        self._steps_here += 1
        self._snapshot()
        if self.mode == "plain":
            now = time.time()
            if now - self._last_block >= self.every_s:
                self._last_block = now
                self._status_block()

    @hookimpl
    def on_trial_decision(self, trial, result, decision, info):
        view = self._view(trial)
        value = getattr(decision, "value", str(decision))
        reason = (info or {}).get("reason", "")
        if value == "PAUSE":
            view.state, view.reason = "paused", reason
            # The step of the result decided on: a PBT exploit may already have moved the trial on.
            step = (result or {}).get("step", trial.step)
            self._say(f"trial {trial.id} paused at step {step}{_why(reason)}: {self._metric_text(view)}")
        elif value == "STOP":
            view.reason = reason
        self._snapshot()

    @hookimpl
    def on_trial_complete(self, trial):
        view = self._view(trial)
        if trial.step >= getattr(self.experiment, "max_steps", math.inf):
            view.reason = "done"  # its whole budget ran, whatever the scheduler calls that
        view.state = _state("TERMINATED", view.reason)
        self._ended_here += 1
        what = "completed" if view.state == "done" else "stopped"
        self._snapshot()
        self._say(f"trial {trial.id} {what} at step {trial.step}{_why(view.reason if what == 'stopped' else '')}: "
                  f"{self._metric_text(view)} | {self._best_text()}")

    @hookimpl
    def on_trial_error(self, trial, error):
        view = self._view(trial)
        view.state, view.reason = "failed", str(error)
        self._ended_here += 1
        self._snapshot()
        self._error(f"trial {trial.id} failed: {error}")

    @hookimpl
    def on_experiment_end(self, experiment):
        self._snapshot()
        if self.mode == "live":
            self._stop_live()
        elif self.mode == "plain":
            print(f"{PREFIX} {self.header()}", file=self.out, flush=True)

    # ------------------------------------------------------------------ the status

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in ("running", "paused", "pending", "stopped", "done", "failed")}
        for view in self.views.values():
            out[view.state] = out.get(view.state, 0) + 1
        return out

    def best(self) -> _TrialView | None:
        """The trial whose last result is best, as the experiment ranks them."""
        metric, best = self.experiment.metric, None
        for view in self.views.values():
            value = view.last.get(metric)
            if not _finite(value):
                continue
            if best is None or self._better(value, best.last[metric]) or (
                    value == best.last[metric] and view.id < best.id):
                best = view
        return best

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: the time budget, or the trials left at the rate seen so far, whichever ends first."""
        now = time.time() if now is None else now
        exp, tune = self.experiment, self.experiment.cfg.TUNE
        guesses = []
        if tune.TIME_BUDGET_S:
            guesses.append(max(tune.TIME_BUDGET_S - exp.time_used(), 0.0))
        elapsed = now - self._started
        counts = self.counts()
        ended = counts["stopped"] + counts["done"] + counts["failed"]
        left = max(tune.NUM_TRIALS - ended, 0)
        if left == 0:
            guesses.append(0.0)
        elif self._ended_here and elapsed > 0:
            guesses.append(left / (self._ended_here / elapsed))
        elif self._steps_here and elapsed > 0:
            # No trial has ended yet: budget units left at the rate of units so far (an upper bound
            # when a scheduler stops trials early).
            max_steps = max(getattr(exp, "max_steps", 1), 1)
            started = sum(1 for v in self.views.values() if v.state != "pending")
            units_left = sum(max(max_steps - v.step, 0) for v in self.views.values() if v.state in
                             ("running", "paused", "pending"))
            units_left += max(tune.NUM_TRIALS - started, 0) * max_steps
            guesses.append(units_left / (self._steps_here / elapsed))
        return min(guesses) if guesses else None

    def _best_text(self) -> str:
        best = self.best()
        if best is None:
            return "no result yet"
        return f"best {self.experiment.metric}={_num(best.last[self.experiment.metric])} (trial {best.id})"

    def _metric_text(self, view: _TrialView) -> str:
        value = view.last.get(self.experiment.metric)
        return f"{self.experiment.metric}={_num(value)}" if value is not None else "no result"

    def header(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return self._format_header(self._header_parts(now), now)

    def _header_parts(self, now: float) -> tuple:
        counts = self.counts()
        parts = [f"{counts[k]} {k}" for k in ("running", "paused", "pending", "stopped", "done", "failed") if counts[k]]
        summary = f"{len(self.views)}/{self.experiment.cfg.TUNE.NUM_TRIALS} trials: {', '.join(parts) or 'none yet'}"
        return summary, self._best_text(), now, self.eta_s(now)

    def _format_header(self, parts: tuple, now: float) -> str:
        summary, best, at, eta = parts
        eta_text = f", eta {_duration(eta - (now - at))}" if eta is not None else ""
        return f"{summary} | {best} | {_duration(self.experiment.time_used())} elapsed{eta_text}"

    def trial_line(self, view: _TrialView) -> str:
        max_steps = getattr(self.experiment, "max_steps", None)
        parts = [f"step {view.step}" + (f"/{max_steps}" if max_steps else "")]
        for text in _progress(view.last):
            parts.append(text)
        parts.append(self._metric_text(view))
        return f"trial {view.id}: " + ", ".join(parts)

    def _status_block(self) -> None:
        lines = [self.header()]
        for view in sorted(self.views.values(), key=lambda v: v.id):
            if view.fresh and view.state == "running":
                lines.append("  " + self.trial_line(view))
            view.fresh = False
        for line in lines:
            print(f"{PREFIX} {line}", file=self.out, flush=True)

    # ------------------------------------------------------------------ the live table

    def _snapshot(self) -> None:
        """Rows for the live table, built in the loop's thread; the refresh thread only reads them."""
        if self.mode != "live":
            return
        metric = self.experiment.metric
        active = [v for v in self.views.values() if v.state in ("running", "paused", "pending")]
        active.sort(key=lambda v: ({"running": 0, "paused": 1, "pending": 2}[v.state], v.id))
        ended = [v for v in self.views.values() if v.state not in ("running", "paused", "pending")]
        sign = -1.0 if self.experiment.mode == "max" else 1.0

        def rank(v):
            value = v.last.get(metric)
            return (0, sign * value, v.id) if _finite(value) else (1, 0.0, v.id)

        ended.sort(key=rank)
        shown = (active + ended)[: self.max_rows]
        rows = []
        for v in shown:
            last = v.last
            rows.append((
                str(v.id), v.state + (f" ({v.reason})" if v.reason and v.state in ("stopped", "paused") else ""),
                str(v.step), _num(last.get("epoch")) if "epoch" in last else "",
                _first(last, LOSS_KEYS), _num(last.get("lr"), ".1e") if "lr" in last else "",
                _speed(last), _num(last.get(metric)) if metric in last else "",
                _num(v.best) if v.best is not None else "", _params(v.params),
            ))
        hidden = len(self.views) - len(shown)
        with self._lock:
            self._rows = rows
            self._hidden = hidden
            self._parts = self._header_parts(time.time())

    def render(self):
        """The live table (rich renderable)."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            rows, hidden, parts = list(self._rows), self._hidden, self._parts
        header = self._format_header(parts, time.time()) if parts else ""
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, expand=False)
        metric = self.experiment.metric
        names = ("trial", "status", "step", "epoch", "loss", "lr", "speed", metric, "best", "params")
        # Columns no trial fills (no loss reported, say) are left out to save width.
        keep = [i for i, _ in enumerate(names) if i < 3 or i == len(names) - 1 or any(r[i] for r in rows)]
        for i in keep:
            if names[i] == "params":
                # Only the parameters give way on a narrow terminal.
                table.add_column("params", overflow="fold", ratio=1, min_width=12)
            else:
                table.add_column(names[i], no_wrap=True, justify="left" if names[i] == "status" else "right")
        styles = {"running": "green", "paused": "yellow", "stopped": "dim", "failed": "red", "pending": "cyan"}
        for row in rows:
            table.add_row(*(row[i] for i in keep), style=styles.get(row[1].split(" ")[0]))
        if hidden:
            table.caption = (f"{plural(hidden, 'more trial', 'more trials')} not shown "
                             f"(TUNE.CONSOLE.MAX_ROWS={self.max_rows})")
        return Group(Text(f"{self.experiment.name}: {header}", style="bold"), table)

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(get_renderable=self.render, console=Console(file=self.out),
                          refresh_per_second=1, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        # A run that dies without ending the experiment must not leave the terminal's cursor hidden.
        atexit.register(self._stop_live)

    def _stop_live(self) -> None:
        if self._live is not None:
            atexit.unregister(self._stop_live)
            live, self._live = self._live, None
            live.refresh()
            live.stop()


def _state(status: str, reason: str) -> str:
    return {
        "PENDING": "pending", "RUNNING": "running", "PAUSED": "paused", "ERROR": "failed",
        "TERMINATED": "done" if reason in DONE_REASONS else "stopped",
    }.get(status, status.lower())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any, fmt: str = ".4g") -> str:
    if isinstance(value, float):
        return format(value, fmt)
    return "" if value is None else str(value)


def _first(result: dict, keys) -> str:
    for key in keys:
        if _finite(result.get(key)):
            return _num(float(result[key]))
    return ""


def _speed(result: dict) -> str:
    for key, unit in SPEED_KEYS:
        if _finite(result.get(key)):
            return f"{result[key]:.3g} {unit}"
    return ""


def _progress(result: dict) -> list[str]:
    out = []
    if "epoch" in result:
        out.append(f"epoch {_num(result['epoch'])}")
    loss = _first(result, LOSS_KEYS)
    if loss:
        out.append(f"loss {loss}")
    if _finite(result.get("lr")):
        out.append(f"lr {result['lr']:.2e}")
    speed = _speed(result)
    if speed:
        out.append(speed)
    return out


def _why(reason: str) -> str:
    return f" ({reason})" if reason else ""


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


@hookimpl
def register_reporters(register):
    register("console", ConsoleReporter, description="live table on a terminal, progress lines in logs")

"""TensorBoard event files: scalars per trial and the hparams view of the whole search.

    <experiment>/tensorboard/                 the hparams experiment (space and metric)
    <experiment>/tensorboard/trial_0001/      one run per trial: its result values by step,
                                              its session start (params) and end (status)

Written with tensorboard's own event writer; neither TensorFlow nor torch is imported.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from reidplug.core.hookspecs import hookimpl
from reidplug.core.reporter import Reporter
from reidplug.plugins.reporters.scalars import ParamTracker, numeric_params, require, scalar_metrics


MAX_OPEN = 64


class TensorBoardReporter(Reporter):
    """One TensorBoard run per trial under <experiment>/tensorboard, plus the hparams view."""

    OPTIONS = {"DIR": "", "HPARAMS": True}

    def __init__(self, experiment, *, dir: str = "", hparams: bool = True):
        super().__init__(experiment)
        require("tensorboard", "tensorboard", "tensorboard")
        self.option_dir = dir
        self.hparams = hparams
        self.logdir: Path | None = None
        self._writers: dict[int, object] = {}
        self._started: set[int] = set()
        self._params: ParamTracker | None = None

    # ------------------------------------------------------------------ writing

    def _writer(self, trial):
        writer = self._writers.pop(trial.id, None)
        if writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            # Each writer holds a file and a thread: past MAX_OPEN, the one unused longest is closed.
            # (A trial keeps one event file while it can: TensorBoard orders a run's files by name,
            # and names made within the same second may sort out of order.)
            while len(self._writers) >= MAX_OPEN:
                self._close(next(iter(self._writers)))
            writer = EventFileWriter(str(self.logdir / trial.name), flush_secs=30)
        self._writers[trial.id] = writer  # most recently used last
        return writer

    def _close(self, trial_id: int) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is not None:
            writer.close()

    @staticmethod
    def _event(summary, step: int = 0, wall_time: float | None = None):
        from tensorboard.compat.proto import event_pb2

        return event_pb2.Event(summary=summary, step=int(step), wall_time=wall_time or time.time())

    # ------------------------------------------------------------------ hooks

    @hookimpl
    def on_experiment_start(self, experiment):
        self.experiment = experiment
        self.logdir = Path(self.option_dir) if self.option_dir else experiment.dir / "tensorboard"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._params = ParamTracker(experiment)
        # A resumed experiment: trials whose session started in an earlier run keep it.
        for trial in experiment.trials.values():
            if trial.results or trial.status.value != "PENDING":
                self._started.add(trial.id)
        if self.hparams and not any(self.logdir.glob("events.out.tfevents.*")):
            self._write_experiment(experiment)

    def _write_experiment(self, experiment) -> None:
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        hparams = [hp.HParam(name, _hp_domain(domain)) for name, domain in experiment.space.items()]
        metrics = [hp.Metric(experiment.metric, display_name=f"{experiment.metric} ({experiment.mode})")]
        created = float(experiment.journal.get_meta("created_at", time.time()) if experiment.journal else time.time())
        summary = hp.hparams_config_pb(hparams, metrics, time_created_secs=created)
        writer = EventFileWriter(str(self.logdir))
        writer.add_event(self._event(summary))
        writer.close()

    @hookimpl
    def on_trial_start(self, trial):
        writer = self._writer(trial)
        if self.hparams and trial.id not in self._started:
            from tensorboard.plugins.hparams import summary_v2 as hp

            params = self._params.first(trial)  # before start(): a resumed process sees them first here
            values = {name: _hp_value(self.experiment.space.domains.get(name), v) for name, v in params.items()}
            summary = hp.hparams_pb(values, trial_id=trial.name, start_time_secs=trial.created_at or time.time())
            writer.add_event(self._event(summary))
        self._started.add(trial.id)
        self._params.start(trial)

    @hookimpl
    def on_trial_result(self, trial, result):
        from tensorboard.compat.proto import summary_pb2

        values = scalar_metrics(result)
        if self._params.varying(trial):
            values.update({f"hparam/{k}": v for k, v in numeric_params(self._params.in_force(trial)).items()})
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        writer = self._writer(trial)
        writer.add_event(self._event(summary, result.get("step", trial.step), result.get("timestamp")))
        writer.flush()  # so that a TensorBoard watching the folder sees each result when it arrives

    @hookimpl
    def on_trial_complete(self, trial):
        self._end(trial, "STATUS_SUCCESS")

    @hookimpl
    def on_trial_error(self, trial, error):
        self._end(trial, "STATUS_FAILURE")

    def _end(self, trial, status: str) -> None:
        if self.hparams:
            from tensorboard.compat.proto import summary_pb2
            from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

            info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status), end_time_secs=time.time())
            data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
            summary = summary_pb2.Summary()
            summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data),
                              tensor=metadata.NULL_TENSOR)
            self._writer(trial).add_event(self._event(summary, trial.step))
        self._close(trial.id)

    @hookimpl
    def on_experiment_end(self, experiment):
        for trial_id in list(self._writers):
            self._close(trial_id)


def _hp_domain(domain):
    """The hparams-plugin domain of a search-space domain."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    if domain.categorical:
        kind, values = _discrete(domain.values)
        return hp.Discrete(values, dtype=kind)
    if domain.integer:
        return hp.IntInterval(int(domain.low), int(domain.high) - 1)
    return hp.RealInterval(float(domain.low), float(domain.high))


def _discrete(values: list) -> tuple[type, list]:
    """The plugin wants one type per domain: bools, numbers (as floats) or strings."""
    if all(isinstance(v, bool) for v in values):
        return bool, list(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return float, [float(v) for v in values]
    if all(isinstance(v, str) for v in values):
        return str, list(values)
    return str, [_text(v) for v in values]


def _hp_value(domain, value):
    """A parameter's value as the hparams plugin stores it, matching its domain's type."""
    if domain is not None and domain.categorical:
        kind, _ = _discrete(domain.values)
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str:
            return value if isinstance(value, str) and all(isinstance(v, str) for v in domain.values) else _text(value)
        return value
    if isinstance(value, (bool, int, float, str)):
        return value
    return _text(value)


def _text(value) -> str:
    return json.dumps(value, default=str)


@hookimpl
def register_reporters(register):
    register("tensorboard", TensorBoardReporter, description="TensorBoard scalars per trial and the hparams view")

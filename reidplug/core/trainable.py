"""The Trainable protocol: what one trial runs, one budget unit at a time."""

from __future__ import annotations

import inspect
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class TrialContext:
    """What a trainable knows about its trial besides the sampled parameters."""

    trial_id: int
    trial_dir: str
    experiment_dir: str
    base_config: dict = field(default_factory=dict)  # the experiment's full config, as plain data
    seed: int = 0
    step_epochs: int = 1
    max_steps: int = 0
    device: str = "cpu"
    restore_from: str | None = None
    start_step: int = 0  # steps already done by the checkpoint being restored

    def full_config(self, params: dict):
        """The experiment config with the trial's dotted parameters applied."""
        from reidplug.core.config import load_config, with_params

        return with_params(load_config(self.base_config), params)


class Trainable:
    """One training run driven by the experiment loop.

    The protocol, as the worker drives it::

        trainable.setup(params, context)          # a fresh object in a worker
        if context.restore_from:                   # resume, retry or PBT exploit
            trainable.load(context.restore_from)
        while the scheduler says continue:
            metrics = trainable.step()             # one budget unit, e.g. N epochs + eval
            if a checkpoint is wanted:
                trainable.save(checkpoint_dir)      # into an empty folder; made atomic by the caller
        trainable.cleanup()

    `step()` returns a flat dict of numbers; the key named by TUNE.METRIC is the
    one schedulers and searchers use. Returning {"done": True, ...} ends the trial.

    `prepare(config)`, a classmethod, runs once per search in the experiment
    process before any trial starts (and before the experiment folder is
    written): the place to build what every trial only reads, such as a dataset
    cache, so that trials never race to build it, and to refuse unusable input early.
    """

    @classmethod
    def prepare(cls, config) -> None:
        """Build shared, read-only inputs once, in the experiment process (default: nothing)."""

    def setup(self, params: dict, context: TrialContext) -> None:
        self.params = params
        self.context = context

    def step(self) -> dict:
        raise NotImplementedError

    def save(self, checkpoint_dir: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot save checkpoints")

    def load(self, checkpoint_dir: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot load checkpoints")

    def cleanup(self) -> None:
        pass


class FunctionTrainable(Trainable):
    """Adapts `train(config, report)` (or a generator yielding metrics) to the protocol.

    A plain function runs in a thread; each `report(**metrics)` hands one result
    over and waits until the loop asks for the next step. Functions of this kind
    cannot be checkpointed from outside, so pausing them is not supported.
    """

    def __init__(self, fn: Callable):
        self.fn = fn

    def setup(self, params, context):
        super().setup(params, context)
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(0)
        self._thread: threading.Thread | None = None
        self._gen = None
        if inspect.isgeneratorfunction(self.fn):
            self._gen = self.fn(params)

    def _run(self):
        try:
            self.fn(self.params, self._report)
            self._results.put(("end", None))
        except BaseException as exc:  # handed to the loop as the trial's error
            self._results.put(("error", exc))

    def _report(self, metrics: dict | None = None, **kwargs):
        self._results.put(("result", {**(metrics or {}), **kwargs}))
        self._go.acquire()

    def step(self):
        if self._gen is not None:
            try:
                return dict(next(self._gen))
            except StopIteration:
                return {"done": True}
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        else:
            self._go.release()
        kind, value = self._results.get()
        if kind == "error":
            raise value
        if kind == "end":
            return {"done": True}
        return value


def can_checkpoint(trainable: Any) -> bool:
    """Whether the trainable implements save/load (the base class's versions raise)."""
    save = getattr(type(trainable), "save", None)
    return save is not None and save is not Trainable.save


def resolve_trainable(ref: Any) -> Any:
    """The class or function a trainable reference names: a registered name, "module:attr", or the object."""
    if not isinstance(ref, str):
        return ref
    if ":" in ref:
        from reidplug.core.registry import resolve

        return resolve(ref)
    from reidplug.core.manager import registry

    return registry("trainable").get(ref)


def prepare_trainable(ref: Any, config) -> None:
    """Run the trainable's `prepare(config)`, if it has one, in this process."""
    factory = resolve_trainable(ref)
    prepare = getattr(factory, "prepare", None) if inspect.isclass(factory) else None
    if prepare is not None:
        prepare(config)


def as_trainable(obj: Any) -> Trainable:
    """A Trainable instance from a Trainable subclass or a function."""
    if inspect.isclass(obj) and issubclass(obj, Trainable):
        return obj()
    if inspect.isclass(obj) and all(hasattr(obj, m) for m in ("setup", "step")):
        return obj()  # duck-typed: implements the protocol without subclassing
    if callable(obj):
        return FunctionTrainable(obj)
    raise TypeError(f"{obj!r} is neither a Trainable class nor a function")

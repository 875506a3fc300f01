"""The Trainable protocol: what one trial runs, one budget unit at a time."""

from __future__ import annotations

import inspect
import queue
import threading
from dataclasses import dataclass, field
from collections.abc import Mapping
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


class TrialConfig(Mapping):
    """What a function trainable `train(config, report)` receives as `config`.

    - `config["lr"]`, `config.get("lr", 0.1)`, `dict(config)`: the trial's sampled
      parameters, by their names in TUNE.SPACE;
    - `config.SOLVER.BASE_LR`, `config.TUNE.METRIC`, ...: the experiment's whole config
      (files, `_BASE_`, command-line overrides and defaults merged), with each sampled
      parameter whose name is a config key (`SOLVER.BASE_LR`) applied; `config.cfg` is
      that config object;
    - `config.params` (the sampled parameters as a dict), `config.trial_id`,
      `config.trial_dir` (a folder of its own), `config.seed` (per trial, stable across
      restarts), `config.max_steps` (TUNE.MAX_STEPS; 0: until the function returns)
      and `config.context` (the TrialContext).

    A function cannot be checkpointed from outside: a trial that is restarted (a resume,
    a retry) runs the function from the start, and the steps it had already reported
    are not recorded twice.
    """

    def __init__(self, params: dict, context: TrialContext | None = None):
        self.params = dict(params)
        self.context = context
        self._cfg = None

    def __getitem__(self, key):
        return self.params[key]

    def __iter__(self):
        return iter(self.params)

    def __len__(self):
        return len(self.params)

    def __repr__(self):
        return f"TrialConfig({self.params!r})"

    @property
    def cfg(self):
        """The merged config object with the sampled config keys applied (built on first use)."""
        if self._cfg is None:
            from reidplug.core.config import get_dotted, load_config, with_params

            base = self.context.base_config if self.context is not None else {}

            def is_key(name):
                try:
                    get_dotted(base, name)
                    return True
                except (KeyError, TypeError, AttributeError):
                    return False

            self._cfg = with_params(load_config(base), {k: v for k, v in self.params.items() if is_key(k)})
        return self._cfg

    @property
    def trial_id(self) -> int:
        """The trial's id."""
        return self.context.trial_id if self.context is not None else 0

    @property
    def trial_dir(self) -> str:
        """A folder of the trial's own (its log.txt and metrics.jsonl are there too)."""
        return self.context.trial_dir if self.context is not None else "."

    @property
    def seed(self) -> int:
        """A per-trial seed derived from TUNE.SEED, the same when the trial restarts."""
        return self.context.seed if self.context is not None else 0

    @property
    def max_steps(self) -> int:
        """TUNE.MAX_STEPS: the results the trial reports at most; 0: until the function returns."""
        return self.context.max_steps if self.context is not None else 0

    def __getattr__(self, name):
        # Upper-case names are config sections (config.SOLVER); anything else is a typo.
        if name.isupper() and not name.startswith("_"):
            return getattr(self.cfg, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}; the sampled parameters are "
                             f"config[name] ({', '.join(self.params) or 'none'}), config sections config.SOLVER etc.")


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
    """Adapts `train(config, report)` (or a generator `train(config)` yielding metrics) to the protocol.

    `config` is a TrialConfig: the sampled parameters by name, and the merged config
    by attribute. A plain function runs in a thread; each `report(**metrics)` hands
    one result over (one step) and waits until the loop asks for the next step. The
    trial ends when the function returns, or at TUNE.MAX_STEPS results when that is
    set. Functions cannot be checkpointed from outside, so pausing them is not
    supported, and a restarted trial runs the function from the start.
    """

    def __init__(self, fn: Callable):
        self.fn = fn

    def setup(self, params, context):
        super().setup(params, context)
        self._results: queue.Queue = queue.Queue(maxsize=1)
        self._go = threading.Semaphore(0)
        self._thread: threading.Thread | None = None
        self._gen = None
        self.config = TrialConfig(params, context)
        if inspect.isgeneratorfunction(self.fn):
            self._gen = self.fn(self.config)

    def _run(self):
        try:
            self.fn(self.config, self._report)
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

"""Building an experiment's components from its config: the trainable, searcher, scheduler and reporters.

Each is found by name in its registry (an unknown name is an error naming the file
and key) and built with the options of its section `TUNE.<NAME>`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import math
import os
import re
import sys
from typing import Any

from reidplug.core import plugin_faults
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.options import resolve_options
from reidplug.core.registry import resolve

_KEYS = {"searcher": "TUNE.SEARCHER", "scheduler": "TUNE.SCHEDULER", "reporter": "TUNE.REPORTERS"}


def check_trainable(exp) -> None:
    """A `module:attr` trainable must import and be callable; a registered name must exist.

    Sets `exp.trainable_is_function`: a `train(config, report)` function (or generator)
    rather than a Trainable class.
    """
    target = exp.trainable
    if isinstance(exp.trainable, str) and ":" in exp.trainable:
        target = import_trainable(exp)
        if not callable(target):
            raise ConfigError(
                f"{exp.trainable} is a {type(target).__name__}, not a Trainable class or a "
                "train(config, report) function", file=exp._origin("TUNE.TRAINABLE"), key="TUNE.TRAINABLE",
            )
    elif isinstance(exp.trainable, str):
        entry = exp.component("trainable", exp.trainable, "TUNE.TRAINABLE")
        # Workers get an import reference when there is one, so that they need not scan
        # the installed plugins themselves (a third of a second per worker start).
        ref = entry.factory if isinstance(entry.factory, str) else importable_ref(entry.factory)
        if ref:
            exp.launch_trainable = ref
        # The Re-ID trainable is a class, and importing it here would import torch.
        target = None if exp.trainable == "reid" else entry.load()
    exp.trainable_is_function = target is not None and callable(target) and not inspect.isclass(target)
    # Trials without a step limit of their own: functions, and trials run by the application ("external").
    exp.runs_until_done = exp.trainable_is_function or bool(getattr(target, "RUNS_UNTIL_DONE", False))


def import_paths(exp) -> list[str]:
    """Where a `module:function` trainable is looked for besides the installed packages:
    the config file's folder, then the current folder."""
    paths = []
    source = getattr(exp.cfg, "source_file", None)
    if source and not str(source).startswith("<"):
        folder = os.path.dirname(os.path.abspath(source))
        paths.append(folder)
        if os.path.basename(source) == "experiment.yaml":  # `reidplug resume DIR`: where the first run looked
            paths += [p for p in _recorded_paths(os.path.join(folder, "experiment.db")) if os.path.isdir(p)]
    paths.append(os.getcwd())
    return list(dict.fromkeys(paths))


def _recorded_paths(db: str) -> list[str]:
    """The import paths the journal recorded when the experiment started (read only, nothing run)."""
    import json
    import sqlite3

    if not os.path.isfile(db):
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'import_paths'").fetchone()
        finally:
            conn.close()
        paths = json.loads(row[0]) if row else []
    except (sqlite3.Error, ValueError):
        return []  # the resume itself reports a damaged journal
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def import_trainable(exp) -> Any:
    """Import TUNE.TRAINABLE `module:attr` with `import_paths` on sys.path (kept there, so that
    the worker processes, which inherit sys.path, find it too)."""
    ref = str(exp.trainable)
    module_name, _, attr = ref.partition(":")
    file, key = exp._origin("TUNE.TRAINABLE"), "TUNE.TRAINABLE"
    paths = import_paths(exp)
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    try:
        importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and (missing == module_name or module_name.startswith(missing + ".")):
            raise ConfigError(f"cannot import module {module_name!r}: no {module_name.replace('.', '/')}.py in "
                              f"{' or '.join(paths)} nor in the installed packages", file=file, key=key) from None
        raise ConfigError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", file=file, key=key) from None
    except Exception as exc:
        raise ConfigError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", file=file, key=key) from None
    try:
        return resolve(ref)
    except UserError as exc:
        raise ConfigError(str(exc), file=file, key=key) from None


def default_max_steps(exp) -> int:
    """Steps of a trial when TUNE.MAX_STEPS is 0: the Re-ID epochs in steps of TUNE.STEP_EPOCHS,
    no limit (0) for a function (it runs until it returns) or the application's own trials,
    one for a Trainable class."""
    tune = exp.cfg.TUNE
    if exp.is_reid:
        return math.ceil(exp.cfg.SOLVER.MAX_EPOCH / tune.STEP_EPOCHS)
    return 0 if exp.runs_until_done else 1


def check_points(exp) -> None:
    """Each of TUNE.POINTS_TO_EVALUATE sets exactly the keys of TUNE.SPACE."""
    for i, point in enumerate(exp.cfg.TUNE.POINTS_TO_EVALUATE):
        key = f"TUNE.POINTS_TO_EVALUATE[{i}]"
        unknown = [k for k in point if k not in exp.space.domains]
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is not in TUNE.SPACE", file=exp._origin(key), key=key)
        missing = [k for k in exp.space.domains if k not in point]
        if missing:
            raise ConfigError(f"missing a value for {missing[0]!r}", file=exp._origin(key), key=key)


def check_sections(exp) -> None:
    """Every TUNE.<NAME> section names a known component and holds options it accepts, in use or not."""
    owners: dict[str, list] = {}  # section name -> entries ("bohb" is a searcher and a scheduler)
    for kind in ("searcher", "scheduler", "executor", "reporter"):
        for entry in exp.pm.registry(kind):
            owners.setdefault(entry.name.upper(), []).append(entry)
    aliases = {alias.upper(): entry for entries in owners.values() for entry in entries for alias in entry.aliases}
    for section, values in exp.cfg.TUNE.PLUGINS.items():
        key = f"TUNE.{section}"
        if section in aliases and section not in owners:
            name = aliases[section].name
            raise ConfigError(f"{section.lower()!r} is another name of {name!r}, whose options go in "
                              f"TUNE.{name.upper()}", file=exp._origin(key), key=key)
        if section not in owners:
            close = difflib.get_close_matches(section, list(owners), n=1)
            hint = f" (did you mean 'TUNE.{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown key{hint}; option sections are named after a searcher, scheduler, executor or reporter",
                file=exp._origin(key),
                key=key,
            )
        problems = []
        for entry in owners[section]:
            try:
                cls = entry.load()
            except UserError:
                continue  # a component that cannot be imported is refused when it is used, not here
            try:
                resolve_options(cls, values, key=key, file=exp._origin(key))
                break  # one component that shares the section takes these options
            except ConfigError as exc:
                problems.append(exc)
        else:
            if problems:
                raise problems[0]


def entry(exp, kind: str, name: str, key: str):
    """The registry entry for `name`; an unknown name is an error naming the file and key."""
    try:
        return exp.pm.registry(kind).entry(name, config_key=key)
    except ConfigError as exc:
        exc.file = exc.file or exp._origin(key)
        exc.args = (exc._format(),)
        raise


def options(exp, name: str, cls: Any) -> dict:
    """The options of component `name` (class `cls`) from its section, checked."""
    section = exp.cfg.TUNE.PLUGINS.get(name.upper())
    key = f"TUNE.{name.upper()}"
    return resolve_options(cls, section, key=key, file=exp._origin(key))


def build(exp, kind: str, name: str):
    """The searcher, scheduler or reporter named `name`, built with its options (see `construct`)."""
    key = _KEYS[kind]
    entry = exp.component(kind, name, key)
    cls = entry.load()
    opts = exp.options(entry.name, cls)
    tune = exp.cfg.TUNE
    if kind == "searcher":
        args = (exp.space,)
        kwargs = dict(metric=exp.metric, mode=exp.mode, seed=tune.SEED, points_to_evaluate=tune.POINTS_TO_EVALUATE,
                      max_concurrent=tune.MAX_CONCURRENT, num_trials=tune.NUM_TRIALS)
    elif kind == "scheduler":
        check_step_budget(exp, entry, cls)
        args = (exp.searcher,)
        kwargs = dict(metric=exp.metric, mode=exp.mode, max_steps=exp.max_steps, seed=tune.SEED)
    else:
        args, kwargs = (exp,), {}
    return construct(exp, kind, entry, cls, args, {**kwargs, **opts}, key=key)


def construct(exp, kind: str, entry, cls, args: tuple, kwargs: dict, *, key: str):
    """`cls(*args, **kwargs)` with `self.section` set first, its faults named, and the result
    remembered in `exp.components` so that a later fault in it names its plugin too."""
    owner = plugin_faults.owner_of(exp.pm, kind, entry)
    section = f"TUNE.{entry.name.upper()}"
    try:
        if inspect.isclass(cls) and cls.__new__ is object.__new__:
            obj = cls.__new__(cls)
            obj.section = section  # for the keys of the component's own errors, before its __init__ runs
            obj.__init__(*args, **kwargs)
        else:
            obj = cls(*args, **kwargs)
    except ConfigError as exc:
        if exc.file is None:  # raised by the component, which knows the key but not the file
            exc.file = exp._origin(exc.key or key)
            exc.args = (exc._format(),)
        raise
    except UserError:
        raise
    except ImportError as exc:  # the documented place for a heavy import is the constructor
        raise plugin_faults.import_fault(exc, owner, key) from exc
    except (ValueError, TypeError) as exc:  # a value the component refuses, at its option's key when it names one
        where, reason = option_key(entry.name, cls, str(exc)) or (key, str(exc))
        raise ConfigError(reason, file=exp._origin(where), key=where) from None
    except Exception as exc:
        fault = plugin_faults.blame(exc, [(cls, owner)])
        if fault is None:
            raise
        raise fault from exc
    if not hasattr(obj, "section"):
        with contextlib.suppress(AttributeError, TypeError):
            obj.section = section
    exp.components.append((obj, owner))
    return obj


def check_step_budget(exp, entry, cls) -> None:
    """A function trainable runs until it returns (TUNE.MAX_STEPS: 0); a scheduler that
    allots steps needs to know how many there are."""
    if exp.max_steps or not getattr(cls, "NEEDS_MAX_STEPS", True):
        return
    raise ConfigError(
        f"0 runs a function trainable until it returns, but scheduler {entry.name!r} allots steps; "
        "set the number of steps (results) a trial reports at most",
        file=exp._origin("TUNE.MAX_STEPS"), key="TUNE.MAX_STEPS",
    )


def option_key(name: str, cls: Any, message: str) -> tuple[str, str] | None:
    """(TUNE.<NAME>.<OPTION>, reason) for a component's message that names one of its options
    ("REDUCTION_FACTOR must be at least 2"), so that the error points at the option's key."""
    options = getattr(cls, "OPTIONS", None) or {}
    for word in re.findall(r"[A-Z][A-Z0-9_]+", message):
        if word in options:
            key = f"TUNE.{name.upper()}.{word}"
            return key, message[len(key):].lstrip(": ") if message.startswith(key + " ") else message
    return None


def importable_ref(obj: Any) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    return f"{module}:{qualname}"

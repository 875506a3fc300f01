"""Opening an experiment's folder: a new one, `--fresh` (the old one moved aside) or `--resume`.

On resume the recorded config is compared with the new one before anything in the
folder is touched: only keys that do not change the search may differ.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from reidplug.core import components, faults, outputs
from reidplug.core import journal as journal_file
from reidplug.core.config import flatten_keys, get_dotted, to_yaml, unstructure
from reidplug.core.errors import ConfigError, UserError
from reidplug.core.journal import SCHEMA_VERSION, Journal
from reidplug.core.lock import FolderLock
from reidplug.core.options import resumable_options

# Keys that may change between a run and its --resume; anything else must match, except
# the option sections that `resumable_keys` adds.
RESUMABLE_KEYS = {
    "TUNE.NUM_TRIALS", "TUNE.TIME_BUDGET_S", "TUNE.MAX_CONCURRENT", "TUNE.REPORTERS", "TUNE.MAX_FAILURES",
    "TUNE.KEEP_CHECKPOINTS", "TUNE.EXECUTOR", "TUNE.RESOURCES_PER_TRIAL",
    "DATALOADER.NUM_WORKERS", "OUTPUT_DIR", "TUNE.NAME",
}


def resumable_keys(exp) -> set[str]:
    """RESUMABLE_KEYS, plus the option sections that cannot change the search: every reporter's
    and executor's, those of searchers and schedulers not in use, and the RESUMABLE_OPTIONS
    that the searcher and scheduler in use declare."""
    keys = set(RESUMABLE_KEYS)
    tune = exp.cfg.TUNE
    in_use = {"searcher": (exp.component("searcher", tune.SEARCHER, "TUNE.SEARCHER").name, exp.searcher),
              "scheduler": (exp.component("scheduler", tune.SCHEDULER, "TUNE.SCHEDULER").name, exp.scheduler)}
    used_sections = {f"TUNE.{name.upper()}" for name, _ in in_use.values()}
    for kind in ("searcher", "scheduler", "executor", "reporter"):
        for entry in exp.pm.registry(kind):
            section = f"TUNE.{entry.name.upper()}"
            if kind in ("executor", "reporter"):
                keys.add(section)
            elif entry.name == in_use[kind][0]:
                allowed = resumable_options(type(in_use[kind][1]), kind) or set()
                keys |= {f"{section}.{option}" for option in allowed}
            elif section not in used_sections:  # "bohb" names a searcher and a scheduler: one section
                keys.add(section)
    return keys


def open_folder(exp, *, resume: bool, fresh: bool) -> None:
    """Create, move aside or reopen the folder, take its lock and open the journal."""
    db = exp.dir / "experiment.db"
    exists = db.exists()
    if exists and not resume and not fresh:
        raise ConfigError(
            f"experiment {exp.name!r} already exists in {exp.dir}; pass --resume to continue it, "
            "--fresh to start over (the old folder is kept aside), or set another TUNE.NAME",
            file=exp._origin("TUNE.NAME"),
            key="TUNE.NAME",
        )
    if resume and not exists:
        raise UserError(f"{exp.dir}: nothing to resume (no experiment.db)")
    yaml_path = exp.dir / "experiment.yaml"
    started = resume and yaml_path.is_file()
    if resume:
        journal_file.check_file(db)  # reads the header only: a damaged journal changes nothing
    if started:
        check_resume_config(exp, read_yaml(yaml_path))  # before anything in the folder is touched
    old_lock = move_aside(exp) if exists and fresh and not resume else None
    try:
        try:
            exp.dir.mkdir(parents=True, exist_ok=True)
            if exp.storage != exp.dir:
                exp.storage.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            key = "OUTPUT_DIR" if not exp.dir.is_dir() else "TUNE.STORAGE"
            raise ConfigError(f"cannot create the experiment folder ({exc.strerror or exc})",
                              file=exp._origin(key), key=key) from None
        if exp._lock is not None:
            exp._lock.acquire()
    finally:
        if old_lock is not None:
            old_lock.release()
    if not resume:
        # Written before the journal exists, so that `reidplug resume DIR` works from the
        # moment experiment.db appears.
        outputs.atomic_write(yaml_path, to_yaml(exp.cfg))
    faults.point("journal.create")
    exp.journal = Journal(db)
    faults.point("journal.created")
    known = exp.journal.get_meta("config")
    if resume and not started and known is not None:
        check_resume_config(exp, known)  # killed between the journal and experiment.yaml (older versions)
    if not resume or known is None:
        # A run killed before its first commit leaves a journal without a config: start it anew.
        with exp.journal.transaction("open"):
            exp.journal.set_meta("schema", SCHEMA_VERSION)
            exp.journal.set_meta("name", exp.name)
            exp.journal.set_meta("config", unstructure(exp.cfg))
            exp.journal.set_meta("created_at", time.time())
            exp.journal.set_meta("trainable", exp.trainable if isinstance(exp.trainable, str) else _ref(exp.trainable))
            # `reidplug resume DIR` reads DIR/experiment.yaml: the trainable's module is looked for
            # where the first run looked, too.
            exp.journal.set_meta("import_paths", components.import_paths(exp))
    if resume and not started:
        outputs.atomic_write(yaml_path, to_yaml(exp.cfg))


def move_aside(exp) -> FolderLock:
    """--fresh: move the old experiment folder aside, holding its lock, and return the lock.

    Taking the lock first means a live run's folder is never moved: its run holds the
    lock, and this one is refused before it has changed anything.
    """
    old = FolderLock(exp.dir)
    old.acquire()
    try:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = exp.dir.with_name(f"{exp.dir.name}.{stamp}")
        n = 1
        while aside.exists() or (exp.storage != exp.dir and exp.storage.with_name(aside.name).exists()):
            n += 1
            aside = exp.dir.with_name(f"{exp.dir.name}.{stamp}-{n}")
        os.replace(exp.dir, aside)
        if exp.storage != exp.dir and exp.storage.exists():
            os.replace(exp.storage, exp.storage.with_name(aside.name))
    except BaseException:
        old.release()
        raise
    return old


def check_resume_config(exp, old: dict) -> None:
    """Refuse a resume whose config changes the search (keys outside RESUMABLE_KEYS)."""
    new = unstructure(exp.cfg)
    resumable = resumable_keys(exp)
    for key in sorted(set(flatten_keys(old)) | set(flatten_keys(new))):
        if any(key == k or key.startswith(k + ".") for k in resumable):
            continue
        a, b = _lookup(old, key), _lookup(new, key)
        if isinstance(a, dict) or isinstance(b, dict):
            continue
        if a != b:
            raise ConfigError(
                f"changed since the experiment started ({a!r} -> {b!r}); resuming would mix two different "
                "searches. Restore the old value or start a new experiment (another TUNE.NAME or --fresh)",
                file=exp._origin(key),
                key=key,
            )


def _ref(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _lookup(data: dict, key: str):
    try:
        return get_dotted(data, key)
    except (KeyError, TypeError, AttributeError):
        return None


def read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); it records the experiment's config") from None
    return data if isinstance(data, dict) else {}

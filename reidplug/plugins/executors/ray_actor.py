"""The Ray actor that runs trials: the local worker's trial runner behind an actor method."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reidplug.core import processes
from reidplug.plugins.executors.local import TrialRunner


class _Outbox:
    """Collects what the runner reports, so that one actor call returns it all."""

    def __init__(self):
        self.messages: list = []

    def send(self, message) -> None:
        self.messages.append(message)

    def take(self) -> list:
        out, self.messages = self.messages, []
        return out


class _ActorRunner(TrialRunner):
    """The local trial runner, minus folders that only exist on the machine that runs the experiment."""

    def _redirect(self, path: Path) -> None:
        # On a node that does not see the experiment folder, keep output in Ray's worker log
        # rather than scatter half-empty trial folders over the node's local disk.
        if Path(self.spec.context.experiment_dir).is_dir():
            super()._redirect(path)


class TrialActor:
    """Serves trials one after another; each call takes one runner message and returns its reports.

    The messages and reports are those of the local worker: ("launch", spec, save_to),
    ("step", save_to), ("save", path), ("release",) in; ("result", ...), ("saved", ...),
    ("error", ...) out.
    """

    def __init__(self, setup: dict):
        processes.ignore_interrupts()  # the driver owns Ctrl-C, as with local workers
        os.environ.update(setup.get("env", {}))
        for entry in setup.get("sys_path", []):
            # Append, so that the node's own installation wins over paths that only the driver has.
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        cwd = setup.get("cwd")
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        threads = max(int(setup.get("threads", 1)), 1)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        self.outbox = _Outbox()
        self.runner = _ActorRunner(self.outbox, threads)

    def handle(self, message) -> list:
        self.runner.handle(message)
        return self.outbox.take()

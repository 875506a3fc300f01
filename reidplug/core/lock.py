"""One live run per experiment folder."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from reidplug.core.errors import UserError


class ExperimentLocked(UserError):
    """Another live process holds the experiment folder."""


class FolderLock:
    """An advisory lock (flock) on `<dir>/.lock`.

    The kernel drops a flock when its holder dies, however it dies, so a lock
    left by a killed run is simply taken over; the file's text only serves the
    message shown to a second run.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise ExperimentLocked(
                f"{self.path.parent}: another reidplug run (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, since {holder.get('since', '?')}) is using this experiment; "
                "wait for it to end or stop it first"
            ) from None
        previous = self._holder(fd)
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        self.taken_over = previous if previous.get("pid") not in (None, os.getpid()) else None

    @staticmethod
    def _holder(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (ValueError, OSError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

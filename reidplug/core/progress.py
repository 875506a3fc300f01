"""Progress of long work: a rich bar on a terminal, plain periodic lines in logs, nothing when quiet.

    from reidplug.core import progress

    with progress.bar("extracting features", total=len(loader)) as bar:
        for batch in loader:
            ...
            bar.advance()

    for path in progress.track(paths, "writing images"):
        ...

    with progress.stages() as report:         # report(stage, done, total)
        evaluate(..., progress=report)

    with progress.bar("epoch 1/2", total=n, unit="it", timer=False, transient=True) as bar:
        bar.update(i, description=..., info="loss 1.23  450 img/s  eta 0:03:10")

Output goes to stderr, so that a command's stdout (a table, --json) stays clean.
Quiet mode (set_quiet(True), or REIDPLUG_QUIET=1 in the environment, which
worker processes inherit) silences it all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
QUIET_ENV = "REIDPLUG_QUIET"
EVERY_S = 10.0  # plain mode: seconds between lines
# Plain mode: the first line comes sooner, so that a log shows early that long work started;
# work done within it writes only its closing line.
FIRST_S = 0.5

# A callback for code that reports progress without knowing how it is shown.
StageCallback = Callable[[str, int, int], None]


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) progress output in this process and the processes it starts."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def is_quiet() -> bool:
    return os.environ.get(QUIET_ENV, "").strip().lower() not in ("", "0", "false", "no")


def mode(stream: TextIO | None = None) -> str:
    """'quiet', 'rich' (an interactive terminal) or 'plain' (a log file, a pipe, CI)."""
    if is_quiet():
        return "quiet"
    stream = stream if stream is not None else sys.stderr
    if os.environ.get("TERM") == "dumb" or os.environ.get("CI"):
        return "plain"
    try:
        return "rich" if stream.isatty() else "plain"
    except (AttributeError, ValueError):
        return "plain"


_CONSOLES: dict[int, object] = {}


def console(stream: TextIO | None = None):
    """The rich Console of `stream` (stderr by default), shared so that live displays on it nest."""
    from rich.console import Console

    stream = stream if stream is not None else sys.stderr
    found = _CONSOLES.get(id(stream))
    if found is None or found.file is not stream:
        found = _CONSOLES[id(stream)] = Console(file=stream)
    return found


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _count_column(unit: str):
    from rich.progress import ProgressColumn
    from rich.text import Text

    class CountColumn(ProgressColumn):
        """`done/total unit`, or `done unit` while the total is unknown."""

        def render(self, task):
            done = int(task.completed)
            text = f"{done}/{int(task.total)} {unit}" if task.total else f"{done} {unit}"
            return Text(text, style="progress.download")

    return CountColumn()


class Bar:
    """One task's progress; use through `bar()` or `track()`.

    `info` is free text shown after the count (a loss, a rate) and in plain lines.
    `timer=False` leaves out the elapsed and remaining time, for callers whose
    own estimate (in `info`) is better; `transient=True` clears the bar when it ends.
    """

    def __init__(self, description: str, total: int | None = None, *, unit: str = "it", every_s: float = EVERY_S,
                 stream: TextIO | None = None, force_mode: str | None = None, timer: bool = True,
                 transient: bool = False):
        self.description = description
        self.total = total
        self.unit = unit
        self.every_s = every_s
        self.timer = timer
        self.transient = transient
        self.info = ""
        self.stream = stream if stream is not None else sys.stderr
        self.mode = force_mode or mode(self.stream)
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._rich = None
        self._task = None
        self._closed = False
        self._lines = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Bar:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    def open(self) -> None:
        self._start = self._last = time.perf_counter()
        if self.mode == "rich":
            self._open_rich()

    def _open_rich(self) -> None:
        from rich.errors import LiveError
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = [TextColumn("{task.description}"), BarColumn(), _count_column(self.unit),
                   TextColumn("{task.fields[info]}")]
        if self.timer:
            columns.append(TimeElapsedColumn())
            if self.total:
                columns.append(TimeRemainingColumn())
        self._rich = Progress(*columns, console=console(self.stream), transient=self.transient)
        try:
            self._rich.start()
        except LiveError:
            # Another live display (the console reporter's table) owns the terminal.
            self._rich, self.mode = None, "plain"
            return
        self._task = self._rich.add_task(self.description, total=self.total, info=self.info)

    def close(self, ok: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        elif self.mode == "plain" and ok:
            elapsed = time.perf_counter() - self._start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            self._line(f"{self.description}: {self.done}{self._of()} {self.unit} in {_fmt_time(elapsed)} "
                       f"({rate:.3g} {self.unit}/s)")

    # ------------------------------------------------------------------ updates

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None, *, description: str | None = None,
               info: str | None = None) -> None:
        """Set the amount done (and the total, when it becomes known; a new description or info text)."""
        self.done = done
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if info is not None:
            self.info = info
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=self.total, description=self.description,
                              info=self.info)
        elif self.mode == "plain":
            now = time.perf_counter()
            due = now - self._last >= (self.every_s if self._lines else min(self.every_s, FIRST_S))
            if due and not (self.total and done >= self.total):  # when all is done, the closing line says it
                self._last = now
                self._line(self._status(now))

    def _of(self) -> str:
        return f"/{self.total}" if self.total else ""

    def _status(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.description}: {self.done}{self._of()} {self.unit}"
        if self.total:
            text += f" ({100.0 * self.done / self.total:.0f}%)"
        text += f", {rate:.3g} {self.unit}/s, {_fmt_time(elapsed)} elapsed"
        if self.total and rate > 0:
            text += f", eta {_fmt_time(max(self.total - self.done, 0) / rate)}"
        if self.info:
            text += f", {self.info}"
        return text

    def _line(self, text: str) -> None:
        self._lines += 1
        print(text, file=self.stream, flush=True)


def bar(description: str, total: int | None = None, **kwargs) -> Bar:
    """A progress bar to use as a context manager; see Bar for the options."""
    return Bar(description, total, **kwargs)


def track(iterable: Iterable[T], description: str, total: int | None = None, **kwargs) -> Iterator[T]:
    """Yield from `iterable`, showing progress; `total` defaults to len(iterable) when it has one."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Bar(description, total, **kwargs) as b:
        for item in iterable:
            yield item
            b.advance()


@contextlib.contextmanager
def stages(**kwargs) -> Iterator[StageCallback]:
    """A `report(stage, done, total)` callback; each new stage gets its own bar."""
    bars: dict[str, Bar] = {}

    def report(stage: str, done: int, total: int) -> None:
        b = bars.get(stage)
        if b is None:
            # The stage before it is over: close its bar so that its last line is written.
            for other in bars.values():
                other.close()
            b = bars[stage] = Bar(stage, total, **kwargs)
            b.open()
        b.update(done, total)

    try:
        yield report
    finally:
        for b in bars.values():
            b.close()

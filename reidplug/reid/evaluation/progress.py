"""Progress reporting for long evaluation work: a plain callback, and a rich progress bar that provides one."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

# progress(stage, done, total): called as work advances; stages are short phrases.
Progress = Callable[[str, int, int], None]


@contextlib.contextmanager
def rich_progress(console=None, transient: bool = True) -> Iterator[Progress]:
    """A rich progress bar, one line per stage, driven by the callback it yields."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    with Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update

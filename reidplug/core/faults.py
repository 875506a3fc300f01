"""Fault injection for the crash tests: the process SIGKILLs itself at a named code point.

    REIDPLUG_FAULT=<point>[:<nth>]     die the nth time (default 1) this process reaches <point>
    REIDPLUG_FAULT_MARKER=<file>       optional: die only if <file> does not exist yet (it is
                                       created first), so that a fault fires once across the
                                       workers a run spawns and the run that resumes it

Points are plain strings placed in the code with `point("...")`; the journal adds
`commit:<label>` (just before a transaction commits) and `committed:<label>` (just
after) for each labelled transaction. Unset, `point` is an empty function: the
variable is read once, when this module is imported.
"""

from __future__ import annotations

import os
import signal


def _parse(spec: str) -> tuple[str, int]:
    name, sep, nth = spec.rpartition(":")
    if sep and nth.isdigit():
        return name, max(int(nth), 1)
    return spec, 1


_SPEC = os.environ.get("REIDPLUG_FAULT", "")

if not _SPEC:

    def point(name: str) -> None:
        """A place where a test may kill the process (nothing happens: REIDPLUG_FAULT is unset)."""

else:
    _TARGET, _NTH = _parse(_SPEC)
    _MARKER = os.environ.get("REIDPLUG_FAULT_MARKER", "")
    _seen = 0

    def point(name: str) -> None:
        """SIGKILL this process at the nth arrival at the point named by REIDPLUG_FAULT."""
        global _seen
        if name != _TARGET:
            return
        _seen += 1
        if _seen != _NTH:
            return
        if _MARKER:
            try:
                os.close(os.open(_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)

"""The life of a trial worker process: it may start processes, ignores a terminal's Ctrl-C, dies with its parent.

Worker processes are not daemonic, because a daemonic process may not start
children, and a Re-ID trial starts data-loader workers. Daemon gave one
guarantee worth keeping, that no worker outlives the experiment process; here
it comes from three pieces:

* each worker leads a process group of its own, so its loader workers and
  anything else it starts can be signalled at once, and a terminal's Ctrl-C
  (which goes to the foreground group) reaches the experiment process only;
* a lifeline: the worker holds the read end of a pipe whose write end only
  the experiment process holds. When that process dies, however it dies, the
  pipe reports end-of-file and a watcher thread kills the worker's whole group;
* processes a worker starts through our own code (loader workers, pools) ask
  the kernel for SIGKILL when their parent dies (`die_with_parent`).

The main process owns the interruption: workers ignore SIGINT, and the
experiment loop decides what an interrupted trial becomes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux; elsewhere nothing).

    Meant as a multiprocessing initializer or a DataLoader worker_init_fn. The
    parent is the thread that started the process, which for our loaders and
    pools is the process's main thread.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol: the lifeline still holds
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def ignore_interrupts() -> None:
    """A terminal's Ctrl-C is for the experiment process; trial processes carry on until told."""
    with contextlib.suppress(ValueError):  # not the main thread: nothing to change
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        # born with SIGINT blocked (interrupts_held); ignored now, so a pending one is dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def own_process_group() -> None:
    """Lead a new process group, so that the worker and what it starts can be killed together."""
    with contextlib.suppress(OSError):  # already a group or session leader
        os.setpgid(0, 0)


def watch_lifeline(conn) -> threading.Thread:
    """Kill this process's group as soon as `conn` (a pipe only the parent writes to) reports end-of-file."""

    def watch():
        try:
            while True:
                conn.recv_bytes()  # the parent never writes: this returns only at EOF
        except (EOFError, OSError):
            pass
        kill_group(os.getpgid(0) if os.getpgid(0) == os.getpid() else None)
        os._exit(1)

    thread = threading.Thread(target=watch, name="reidplug-lifeline", daemon=True)
    thread.start()
    return thread


def kill_group(pgid: int | None, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group (a worker and its children); None: this process alone."""
    try:
        if pgid is None:
            os.kill(os.getpid(), sig)
        else:
            os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def worker_prelude(lifeline=None) -> None:
    """What every trial worker does first: ignore Ctrl-C, lead its group, and die with its parent."""
    ignore_interrupts()
    own_process_group()
    if lifeline is not None:
        watch_lifeline(lifeline)


@contextlib.contextmanager
def interrupts_held():
    """Hold SIGINT back while starting a child, so that it is born deaf to it.

    A child inherits the blocked-signal mask across fork and exec, so it cannot
    be interrupted before its prelude runs; here a Ctrl-C that arrives meanwhile
    stays pending and is delivered when the block is lifted, not lost.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

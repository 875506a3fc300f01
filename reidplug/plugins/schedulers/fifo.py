"""First in, first out: every trial runs its full budget."""

from reidplug.core.hookspecs import hookimpl
from reidplug.core.scheduler import Scheduler


class FIFOScheduler(Scheduler):
    """Runs trials in creation order to the end of their budget."""

    NEEDS_MAX_STEPS = False  # a function trainable's trials run until the function returns


@hookimpl
def register_schedulers(register):
    register("fifo", FIFOScheduler, description="runs every trial to its full budget")

"""Trainables: what one trial runs."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_trainables(register):
    register("reid", "reidplug.reid.trainable:ReIDTrainable", description="trains and evaluates a Re-ID model")
    register("noop", "reidplug.core.trainables:NoopTrainable", description="does nothing; measures overhead")
    register("external", "reidplug.core.trainables:ExternalTrainable",
             description="trials run by the application itself, through Experiment.ask() and tell()")

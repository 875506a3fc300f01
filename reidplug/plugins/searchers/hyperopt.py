"""TPE through hyperopt, as a real ask/tell searcher."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_searchers(register):
    pass  # filled in with the implementation

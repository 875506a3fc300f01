"""One MLflow run per trial, nested under the experiment."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_reporters(register):
    pass  # filled in with the implementation

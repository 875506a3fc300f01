"""TensorBoard scalars and hparams per trial."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_reporters(register):
    pass  # filled in with the implementation

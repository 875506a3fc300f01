"""Trainers: how one optimisation step is done."""

from reidplug.core.hookspecs import hookimpl


@hookimpl
def register_trainers(register):
    register("fp32", "reidplug.reid.engine.trainers:FP32Trainer", description="plain fp32 steps")
    register(
        "amp",
        "reidplug.reid.engine.trainers:AMPTrainer",
        description="autocast + GradScaler (fp16) on CUDA, bf16 autocast on CPU",
    )

"""Train and evaluate from Python or the CLI."""

from __future__ import annotations

from pathlib import Path

from reidplug.core.config import load_config, to_yaml


def train(config, overrides=(), *, resume: bool = False, echo: bool = True) -> dict:
    """Train one model as the config says; returns the final evaluation.

    Writes config.yaml, metrics.jsonl, model_XXXX.pth, model_best.pth and
    last_checkpoint into OUTPUT_DIR. With `resume`, continues from the last
    checkpoint there.
    """
    from reidplug.reid.engine.checkpoint import load_file
    from reidplug.reid.engine.training import ReIDTraining, trainer_name

    cfg = load_config(config, overrides)
    out = Path(cfg.OUTPUT_DIR)
    training = ReIDTraining(cfg, out, checkpoints=True, echo=echo)
    if resume:
        last = training.checkpointer.last()
        if last is None:
            from reidplug.core.errors import CheckpointError

            raise CheckpointError(f"{out}: nothing to resume (no model_XXXX.pth / last_checkpoint)")
        training.load_state_dict(load_file(last), source=str(last))
        if echo:
            print(f"resumed from {last} at epoch {training.epoch}", flush=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    if echo:
        print(f"training {cfg.MODEL.BACKBONE.NAME} with the {trainer_name(cfg)} trainer on {training.device} "
              f"for {cfg.SOLVER.MAX_EPOCH} epochs ({training.iters_per_epoch} iterations each) -> {out}", flush=True)
    if training.epoch < cfg.SOLVER.MAX_EPOCH:
        training.train()
    results = training.last_eval or training.evaluate(echo=echo)
    return results


def evaluate(config, overrides=(), *, vis: int = 0, echo: bool = True) -> dict:
    """Evaluate MODEL.WEIGHTS (a checkpoint file or folder) on each of DATASETS.TESTS."""
    from reidplug.reid.evaluate_checkpoint import run_evaluation

    cfg = load_config(config, overrides)
    return run_evaluation(cfg, vis=vis, echo=echo)

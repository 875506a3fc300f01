"""Train and evaluate from Python or the CLI."""

from __future__ import annotations

from pathlib import Path

from reidplug.core.config import load_config, to_yaml
from reidplug.core.plural import plural


def train(config, overrides=(), *, resume: bool = False, echo: bool = True, num_gpus: int = 1,
          num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> dict:
    """Train one model as the config says; returns the final evaluation.

    Writes config.yaml, metrics.jsonl, model_XXXX.pth, model_best.pth,
    last_checkpoint and, at the end, model_final.pth (the weights to evaluate)
    into OUTPUT_DIR. With `resume`, continues from the last checkpoint there.

    `num_gpus` processes on each of `num_machines` machines train one model data-parallel
    (FastReID's --num-gpus, --num-machines, --machine-rank, --dist-url; docs/cluster.md).
    """
    cfg = load_config(config, overrides)
    if num_gpus * num_machines > 1:
        from reidplug.reid.engine.launch import train_data_parallel

        return train_data_parallel(cfg, config, list(overrides), resume=resume, echo=echo, num_gpus=num_gpus,
                                   num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url)
    out = Path(cfg.OUTPUT_DIR)
    if echo:
        # Importing torch, reading the data and building the model take seconds: say first what is coming.
        print(f"preparing to train {cfg.MODEL.BACKBONE.NAME} on {', '.join(cfg.DATASETS.NAMES)} -> {out} "
              f"(loading torch, the data and the model)", flush=True)
    from reidplug.reid.engine.checkpoint import load_file
    from reidplug.reid.engine.training import ReIDTraining, trainer_name

    training = ReIDTraining(cfg, out, checkpoints=True, echo=echo)
    if resume:
        last = training.last_checkpoint()
        if last is None:
            from reidplug.core.errors import CheckpointError

            raise CheckpointError(f"{out}: nothing to resume (no model_XXXX.pth / last_checkpoint)")
        training.load_state_dict(load_file(last), source=str(last))
        if echo:
            print(f"resumed from {last} at epoch {training.epoch}", flush=True)
    if training.is_main:
        (out / "config.yaml").write_text(to_yaml(cfg))
    if echo:
        print(f"training {cfg.MODEL.BACKBONE.NAME} with the {trainer_name(cfg)} trainer on {training.device} "
              f"for {plural(cfg.SOLVER.MAX_EPOCH, 'epoch')} ({plural(training.iters_per_epoch, 'iteration')} each) "
              f"-> {out}", flush=True)
    if training.epoch < cfg.SOLVER.MAX_EPOCH:
        training.train()
    results = training.last_eval or training.evaluate(echo=echo)
    final = training.checkpointer.finalize() if training.checkpointer is not None else None
    if echo and final is not None:
        print(f"weights: {final}", flush=True)
        print(f"evaluate them with: reidplug eval {out / 'config.yaml'} MODEL.WEIGHTS={final}", flush=True)
    return results


def evaluate(config, overrides=(), *, vis: int = 0, echo: bool = True) -> dict:
    """Evaluate MODEL.WEIGHTS (a checkpoint file or folder) on each of DATASETS.TESTS."""
    from reidplug.reid.evaluate_checkpoint import find_weights

    cfg = load_config(config, overrides)
    path = find_weights(cfg.MODEL.WEIGHTS)
    if echo:
        # Before torch is imported and the test sets are read, which take seconds.
        print(f"evaluating {path} on {', '.join(cfg.DATASETS.TESTS)}", flush=True)
    from reidplug.reid.evaluate_checkpoint import run_evaluation

    return run_evaluation(cfg, vis=vis, echo=echo, weights_path=path)

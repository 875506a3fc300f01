"""One Re-ID training run, assembled from a config: data, model, optimizer, trainer, hooks."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from reidplug.core.errors import CheckpointError, ConfigError
from reidplug.core.manager import registry
from reidplug.core.plural import plural
from reidplug.reid.engine import distributed as D
from reidplug.reid.engine import hooks as H
from reidplug.reid.engine.checkpoint import Checkpointer, rng_state, set_rng_state
from reidplug.reid.engine.lr_schedule import LRSchedule
from reidplug.reid.engine.optim import apply_hyperparameters, build_optimizer
from reidplug.reid.engine.train_loop import TrainLoop


def resolve_device(name: str) -> torch.device:
    if name in ("auto", ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"not a device: {name!r} (auto, cpu, cuda, cuda:N)", key="MODEL.DEVICE") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA was asked for but no GPU is visible", key="MODEL.DEVICE")
    return device


def trainer_name(cfg) -> str:
    return cfg.SOLVER.TRAINER or ("amp" if cfg.SOLVER.AMP.ENABLED else "fp32")


def build_reid_model(cfg, num_classes: int, device_type: str):
    """The config's model; with MODEL.BACKBONE.NORM (or HEADS.NORM) syncBN and several ranks, its batch
    norms use the statistics of the global batch. In one process syncBN is plain batch norm, as in FastReID."""
    # MODEL.WEIGHTS, when set, is where the model starts (FastReID's or reidplug's weights).
    from reidplug.reid.engine.checkpoint import initial_model

    if not D.wants_sync_bn(cfg):
        return initial_model(cfg, num_classes)
    # The layers are built as plain BN and converted: the conversion, not the backbone, knows the backend.
    saved = (cfg.MODEL.BACKBONE.NORM, cfg.MODEL.HEADS.NORM)
    cfg.MODEL.BACKBONE.NORM = cfg.MODEL.HEADS.NORM = "BN"
    try:
        model = initial_model(cfg, num_classes)
    finally:
        cfg.MODEL.BACKBONE.NORM, cfg.MODEL.HEADS.NORM = saved
    return D.convert_sync_batchnorm(model, device_type) if D.world_size() > 1 else model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class ReIDTraining:
    """Everything one training run needs, with a state that checkpoints and resumes exactly.

    `output_dir` receives metrics.jsonl (and, with `checkpoints=True`, model_XXXX.pth,
    model_best.pth and last_checkpoint). `echo` prints progress lines.

    Inside a process group (`reid/engine/launch.py`), this is one rank of a data-parallel
    run: it trains on its share of each global SOLVER.IMS_PER_BATCH batch through
    DistributedDataParallel, evaluates its share of the test images, and only rank 0
    writes files or prints.
    """

    def __init__(self, cfg, output_dir: str | Path, *, seed: int | None = None, device: str | None = None,
                 checkpoints: bool = False, echo: bool = True, progress_period_s: float = 10.0):
        from reidplug.reid.data.build import build_train_loader

        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.seed = cfg.SEED if seed is None else seed
        self.rank, self.world_size = D.rank(), D.world_size()
        self.distributed = D.is_distributed()
        self.is_main = self.rank == 0
        echo = echo and self.is_main
        self.device = resolve_device(device or cfg.MODEL.DEVICE)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", D.local_rank())  # one GPU per rank
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK and not cfg.DETERMINISTIC
        if cfg.DETERMINISTIC:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(self.seed)

        self.loader = build_train_loader(cfg, seed=self.seed, rank=self.rank, world_size=self.world_size)
        self.train_set = self.loader.train_set
        self.num_classes = self.loader.num_classes
        self.batch_size = cfg.SOLVER.IMS_PER_BATCH
        self.iters_per_epoch = len(self.loader)
        if self.iters_per_epoch == 0:
            raise ConfigError(
                f"the training set ({plural(len(self.train_set.records), 'image')}) gives no full batch "
                f"of {self.batch_size}",
                key="SOLVER.IMS_PER_BATCH",
            )

        self.model = build_reid_model(cfg, self.num_classes, self.device.type).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, self.model)
        # Only now that data and model are known to be usable does anything get written.
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.schedule = LRSchedule(cfg.SOLVER, iters_per_epoch=self.iters_per_epoch)
        cls = registry("trainer").get(trainer_name(cfg), config_key="SOLVER.TRAINER")
        self.trainer = cls(self.model, self.optimizer, cfg, self.device)
        if self.distributed:
            # Frozen layers (MODEL.FREEZE_LAYERS) get no gradient for a while: DDP must expect that.
            freezes = bool(cfg.MODEL.FREEZE_LAYERS) and cfg.SOLVER.FREEZE_ITERS > 0
            self.trainer.forward_model = D.wrap_ddp(self.model, self.device, find_unused=freezes)
        self._rank_rngs: list | None = None
        self.warmup_iter = 0
        self.last_eval: dict | None = None
        self.eval_history: list[dict] = []
        self._test_loaders: dict | None = None

        self.checkpointer = (Checkpointer(self.output_dir, keep=cfg.SOLVER.KEEP_LAST)
                             if checkpoints and self.is_main else None)
        metrics_path = self.output_dir / "metrics.jsonl" if self.is_main else None
        self.progress = H.ProgressHook(self, metrics_path, progress_period_s, echo)
        hooks = [H.LRScheduleHook(self), H.FreezeHook(self.model, cfg.MODEL.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS),
                 self.progress]
        if cfg.TEST.PRECISE_BN.ENABLED:
            hooks.append(H.PreciseBNHook(self, cfg.TEST.PRECISE_BN.NUM_ITER, cfg.TEST.EVAL_PERIOD))
        self.loop = TrainLoop(self.trainer, self.batches, hooks)
        self._periodic: list = []
        if checkpoints:
            self._periodic = [H.EvalHook(self, cfg.TEST.EVAL_PERIOD), H.CheckpointHook(self, cfg.SOLVER.CHECKPOINT_PERIOD)]
            self.loop.register(self._periodic)

    # ------------------------------------------------------------------ running

    def batches(self, epoch: int):
        """The batches (and augmentations) of `epoch`, the same whenever they are asked for."""
        self.loader.set_epoch(epoch)
        return iter(self.loader)

    @property
    def epoch(self) -> int:
        return self.loop.epoch

    def train(self, max_epoch: int | None = None) -> None:
        """Train up to `max_epoch` (default SOLVER.MAX_EPOCH)."""
        self.loop.train(max_epoch or self.cfg.SOLVER.MAX_EPOCH)

    def run_epochs(self, n: int) -> None:
        """Train `n` more epochs (the schedule still spans SOLVER.MAX_EPOCH)."""
        self.loop.train(self.loop.epoch + n)

    # ------------------------------------------------------------------ evaluation

    def test_loaders(self) -> dict:
        from reidplug.reid.data.build import build_test_loader

        if self._test_loaders is None:
            self._test_loaders = {name: build_test_loader(self.cfg, name, rank=self.rank, world_size=self.world_size)
                                  for name in self.cfg.DATASETS.TESTS}
        return self._test_loaders

    def evaluate(self, *, record: bool = True, echo: bool | None = None) -> dict:
        """Metrics on each of DATASETS.TESTS; the first test set's become the run's `last_eval`."""
        from reidplug.reid.evaluation.evaluator import ReidEvaluator, format_table

        echo = (self.progress.echo if echo is None else echo) and self.is_main
        results: dict = {}
        for i, (name, (loader, num_query)) in enumerate(self.test_loaders().items()):
            self.progress.show(f"evaluating on {name}")
            amp = trainer_name(self.cfg) == "amp" and self.device.type == "cuda"
            metrics = ReidEvaluator(self.cfg, num_query)(self.model, loader, self.device, amp=amp)
            if echo:
                print(format_table(metrics, name), flush=True)
            if i == 0:
                results.update(metrics)
            else:
                results.update({f"{name}/{k}": v for k, v in metrics.items()})
        results["epoch"] = self.loop.epoch
        if record:
            self.last_eval = results
            self.eval_history.append(results)
        if record and self.is_main:
            import json
            import time

            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"type": "eval", "time": round(time.time(), 3), "iter": self.loop.iter,
                                    **results}) + "\n")
        return results

    # ------------------------------------------------------------------ state

    def last_checkpoint(self) -> Path | None:
        """The checkpoint a resumed run continues from (every rank reads rank 0's files)."""
        return Checkpointer(self.output_dir).last()

    def gather_rng_states(self) -> None:
        """Collect every rank's RNG state for the next `state_dict` (all ranks call this together)."""
        self._rank_rngs = D.all_gather_objects(rng_state()) if self.world_size > 1 else None

    def save_checkpoint(self, name: str) -> None:
        """model_<name>.pth from rank 0; every rank takes part (their RNG states go in too)."""
        self.gather_rng_states()
        if self.checkpointer is not None:
            self.checkpointer.save(self, name)
        D.barrier()  # no rank runs ahead into a file that is still being written

    def state_dict(self) -> dict:
        extra = {"rng_ranks": self._rank_rngs} if self._rank_rngs else {}
        return {
            **extra,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": self.trainer.state_dict(),
            "schedule": {"warmup_iter": self.warmup_iter},
            "epoch": self.loop.epoch,
            "iter": self.loop.iter,
            "rng": rng_state(),
            "num_classes": self.num_classes,
            "last_eval": self.last_eval or {},
            "best": self.checkpointer.best if self.checkpointer and self.checkpointer.best is not None else -math.inf,
        }

    def load_state_dict(self, state: dict, *, source: str = "checkpoint") -> None:
        """Continue exactly where `state` left off, then follow this run's config hyperparameters."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{source} does not fit this model/optimizer: {first}") from None
        self.trainer.load_state_dict(state.get("trainer", {}))
        self.warmup_iter = int(state.get("schedule", {}).get("warmup_iter", 0))
        self.loop.epoch = int(state["epoch"])
        self.loop.iter = int(state["iter"])
        self.last_eval = dict(state.get("last_eval") or {}) or None
        if self.checkpointer is not None and state.get("best", -math.inf) > -math.inf:
            self.checkpointer.best = float(state["best"])
        ranks = state.get("rng_ranks") or []
        # A data-parallel checkpoint resumed with as many ranks gives each rank back its own streams.
        set_rng_state(ranks[self.rank] if len(ranks) == self.world_size and self.world_size > 1 else state["rng"])
        # The optimizer's groups came back with the checkpoint's hyperparameters;
        # the rates follow the schedule at the next step, the rest follows the config now.
        apply_hyperparameters(self.cfg, self.optimizer)
        self.schedule.apply(self.optimizer, self.warmup_iter, self.loop.epoch)

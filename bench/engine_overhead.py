"""reidplug's training loop against a bare PyTorch loop on the same model, batches and optimizer.

    python bench/engine_overhead.py                # resnet_tiny 128x64, batch 64, CPU
    python bench/engine_overhead.py --iters 40 --rounds 5

Both loops see the same in-memory batches (no data loading), the same model
initialisation and Adam. The bare loop sets the learning rate, runs forward,
losses, backward and the optimizer step. reidplug's loop is the real one:
TrainLoop with the LR-schedule, freeze and progress hooks (metrics.jsonl
included) around the fp32 trainer plugin (non-finite check, clipping switch,
bookkeeping). Rounds alternate between the two; the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def setup(args):
    import torch

    from reidplug.core.config import load_config
    from reidplug.reid.modeling.build import build_model

    cfg = load_config(None, [
        f"MODEL.BACKBONE.NAME={args.backbone}", f"INPUT.SIZE_TRAIN=[{args.size[0]}, {args.size[1]}]",
        f"SOLVER.IMS_PER_BATCH={args.batch}", "SOLVER.AMP.ENABLED=false", "SOLVER.WARMUP_ITERS=100",
    ])
    torch.manual_seed(0)
    model = build_model(cfg, 100)
    g = torch.Generator().manual_seed(0)
    batches = [{"images": torch.rand(args.batch, 3, *args.size, generator=g) * 255,
                "targets": torch.arange(args.batch // 4).repeat_interleave(4) + i} for i in range(4)]
    return cfg, model, batches


def bare(cfg, model, batches, iters):
    import torch

    from reidplug.reid.engine.lr_schedule import LRSchedule

    opt = torch.optim.Adam(model.parameters(), lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    schedule = LRSchedule(cfg.SOLVER)
    model.train()
    t0 = time.perf_counter()
    for i in range(iters):
        for group in opt.param_groups:
            group["lr"] = schedule.lr(cfg.SOLVER.BASE_LR, i, 0)
        batch = batches[i % len(batches)]
        losses = model.losses(model(batch["images"], batch["targets"]), batch["targets"])
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    return time.perf_counter() - t0


def framework(cfg, model, batches, iters, out: Path):
    import torch

    from reidplug.reid.engine import hooks as H
    from reidplug.reid.engine.lr_schedule import LRSchedule
    from reidplug.reid.engine.optim import build_optimizer
    from reidplug.reid.engine.train_loop import TrainLoop
    from reidplug.reid.engine.trainers import FP32Trainer

    class Run:  # the parts of ReIDTraining the hooks use
        pass

    run = Run()
    run.optimizer = build_optimizer(cfg, model)
    run.schedule = LRSchedule(cfg.SOLVER)
    run.trainer = FP32Trainer(model, run.optimizer, cfg, torch.device("cpu"))
    run.warmup_iter = 0
    run.batch_size = cfg.SOLVER.IMS_PER_BATCH
    run.iters_per_epoch = iters
    hooks = [H.LRScheduleHook(run), H.FreezeHook(model, [], 0), H.ProgressHook(run, out / "metrics.jsonl", 10.0, False)]
    loop = TrainLoop(run.trainer, lambda epoch: (batches[i % len(batches)] for i in range(iters)), hooks)
    model.train()
    t0 = time.perf_counter()
    loop.train(1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet_tiny")
    ap.add_argument("--size", type=int, nargs=2, default=[128, 64])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import copy

    cfg, model, batches = setup(args)
    state = copy.deepcopy(model.state_dict())
    times = {"bare": [], "reidplug": []}
    with tempfile.TemporaryDirectory() as tmp:
        bare(cfg, model, batches, 5)  # warm-up
        for r in range(args.rounds):
            for name in (("bare", "reidplug") if r % 2 == 0 else ("reidplug", "bare")):
                model.load_state_dict(state)
                if name == "bare":
                    times[name].append(bare(cfg, model, batches, args.iters))
                else:
                    times[name].append(framework(cfg, model, batches, args.iters, Path(tmp)))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{args.backbone} {args.size[0]}x{args.size[1]}, batch {args.batch}, {args.iters} steps per round, "
          f"{args.rounds} rounds (median)")
    for name, t in med.items():
        print(f"{name:9s} {1000 * t / args.iters:8.1f} ms/step   rounds: "
              + " ".join(f"{1000 * x / args.iters:.1f}" for x in times[name]))
    print(f"reidplug overhead: {100 * (med['reidplug'] / med['bare'] - 1):+.2f}%")


if __name__ == "__main__":
    main()

"""The GPU figures in one run (under 5 minutes on one GPU): AMP against fp32, channels_last, DDP, loader wait.

    python bench/gpu_check.py              # on a machine with a CUDA GPU
    python bench/gpu_check.py --dry-run    # every part, tiny, on the CPU (checks the script itself)

Prints, for R50 at 256x128 batch 64 (bag of tricks) and the SBS R50-ibn recipe
(configs/market1501/sbs_R50-ibn.yml, 384x128 batch 64): images/s and peak memory of the
fp32 and amp trainers, channels_last on and off; a 1-device DDP run (a process group of
one, NCCL) as a sanity check; and the share of step time spent waiting for the data
loader with the shipped DATALOADER.NUM_WORKERS on the synthetic set at 256x128.
Models are built without pretrained weights (nothing is downloaded); images for the
throughput part are random tensors on the device, so those figures are the model step.
Without CUDA it says so in one line, runs the loader part on the CPU, and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
R50 = ROOT / "configs/market1501/bagtricks_R50.yml"
SBS = ROOT / "configs/market1501/sbs_R50-ibn.yml"


def model_step(config: Path, trainer: str, channels_last: bool, steps: int, device, extra=()) -> dict:
    import torch

    from reidplug.core.config import load_config
    from reidplug.core.manager import registry
    from reidplug.reid.engine.optim import build_optimizer
    from reidplug.reid.modeling.build import build_model

    cfg = load_config(str(config), ["MODEL.BACKBONE.PRETRAIN=false", f"SOLVER.TRAINER={trainer}", *extra])
    torch.manual_seed(0)
    model = build_model(cfg, 751).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    step = registry("trainer").get(trainer)(model, optimizer, cfg, device)
    step.channels_last = channels_last
    b, (h, w) = cfg.SOLVER.IMS_PER_BATCH, cfg.INPUT.SIZE_TRAIN
    k = cfg.DATALOADER.NUM_INSTANCE
    batch = {"images": torch.rand(b, 3, h, w, device=device) * 255,
             "targets": torch.arange(b, device=device) // k, "camids": torch.zeros(b, dtype=torch.long)}
    cuda = device.type == "cuda"
    for _ in range(3):  # cuDNN autotuning, allocator warm-up
        step.run_step(batch)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step.run_step(batch)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    del model, optimizer, step
    if cuda:
        torch.cuda.empty_cache()
    return {"images_per_s": b * steps / seconds, "peak_mib": peak, "size": f"{h}x{w}", "batch": b}


def throughput(device, steps: int, dry: bool) -> None:
    extra = ["MODEL.BACKBONE.NAME=resnet_tiny", "INPUT.SIZE_TRAIN=[64, 32]", "SOLVER.IMS_PER_BATCH=32"] if dry else []
    print("| recipe | input | batch | channels_last | trainer | images/s | peak MiB | amp/fp32 speed | amp/fp32 memory |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|")
    for name, config in (("BoT R50", R50), ("SBS R50-ibn", SBS)):
        for cl in (True, False):
            fp32 = model_step(config, "fp32", cl, steps, device, extra)
            amp = model_step(config, "amp", cl, steps, device, extra)
            for label, r in (("fp32", fp32), ("amp", amp)):
                ratio = (f"{amp['images_per_s'] / fp32['images_per_s']:.2f}x | {amp['peak_mib'] / fp32['peak_mib']:.0%}"
                         if label == "amp" else " | ")
                print(f"| {name} | {r['size']} | {r['batch']} | {'on' if cl else 'off'} | {label} | "
                      f"{r['images_per_s']:.0f} | {r['peak_mib']:.0f} | {ratio} |", flush=True)


def _synthetic_cfg(dry: bool, device: str):
    from reidplug.core.config import load_config

    size = "[64, 32]" if dry else "[256, 128]"
    extra = ["MODEL.BACKBONE.NAME=resnet_tiny", "SOLVER.IMS_PER_BATCH=16", "DATASETS.SYNTH.IDS=24"] if dry else [
        "DATASETS.SYNTH.IDS=200"]
    return load_config(str(R50), [
        "MODEL.BACKBONE.PRETRAIN=false", f"MODEL.DEVICE={device}", "DATASETS.NAMES=[SyntheticMarket]",
        "DATASETS.TESTS=[SyntheticMarket]", f"INPUT.SIZE_TRAIN={size}", f"INPUT.SIZE_TEST={size}",
        "SOLVER.AMP.ENABLED=true", *extra])


def loader_wait(device: str, iters: int, dry: bool, out: Path) -> None:
    """Time the training loop spends in next(batch), against the whole loop, with the shipped NUM_WORKERS."""
    import torch

    from reidplug.reid.engine.training import ReIDTraining

    cfg = _synthetic_cfg(dry, device)
    training = ReIDTraining(cfg, out / "loader", echo=False)
    batches = iter(training.batches(0))
    next(batches)  # worker start-up is not steady state
    waited = 0.0
    t0 = time.perf_counter()
    n = min(iters, len(training.loader) - 1)
    for i in range(n):
        w0 = time.perf_counter()
        batch = next(batches)
        if training.device.type == "cuda":
            torch.cuda.synchronize()  # the GPU is idle from here until the batch is on it
        waited += time.perf_counter() - w0
        training.trainer.run_step(batch, iteration=i)
    if training.device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    print(f"loader wait: {waited / total:.1%} of {total:.1f}s over {n} steps with DATALOADER.NUM_WORKERS="
          f"{cfg.DATALOADER.NUM_WORKERS} ({cfg.MODEL.BACKBONE.NAME}, amp, {cfg.INPUT.SIZE_TRAIN[0]}x"
          f"{cfg.INPUT.SIZE_TRAIN[1]}, batch {cfg.SOLVER.IMS_PER_BATCH}, {training.device})", flush=True)


def ddp_sanity(device: str, iters: int, dry: bool, out: Path) -> None:
    """One training process inside a process group of one: DDP, the gathered losses and evaluation all run."""
    import math

    from reidplug.reid.engine import distributed as D
    from reidplug.reid.engine.training import ReIDTraining

    D.init_process_group(D.backend_for(device), f"tcp://127.0.0.1:{D.free_port()}", 1, 0)
    try:
        cfg = _synthetic_cfg(dry, device)
        cfg.DATALOADER.NUM_WORKERS = min(cfg.DATALOADER.NUM_WORKERS, 2)
        training = ReIDTraining(cfg, out / "ddp", echo=False)
        losses = []
        t0 = time.perf_counter()
        for i, batch in enumerate(training.batches(0)):
            if i >= iters:
                break
            losses.append(training.trainer.run_step(batch, iteration=i)["total_loss"])
        seconds = time.perf_counter() - t0
        metrics = training.evaluate(record=False, echo=False)
        ok = all(math.isfinite(x) for x in losses) and type(training.trainer.forward_model).__name__ == \
            "DistributedDataParallel"
        print(f"1-device DDP ({D.backend_for(device)}): {'ok' if ok else 'FAILED'}; {len(losses)} steps, "
              f"{len(losses) * cfg.SOLVER.IMS_PER_BATCH / seconds:.0f} images/s with loading, loss "
              f"{losses[0]:.3f} -> {losses[-1]:.3f}, rank-1 {metrics['rank1']:.1f}", flush=True)
    finally:
        D.destroy_process_group()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every part, tiny, on the CPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per throughput figure")
    parser.add_argument("--loader-iters", type=int, default=60)
    parser.add_argument("--out", default="/tmp/reidplug-gpu-check")
    args = parser.parse_args(argv)
    import torch

    out = Path(args.out)
    cuda = torch.cuda.is_available() and not args.dry_run
    if args.dry_run:
        print("dry run: every part, tiny, on the CPU; the figures mean nothing", flush=True)
        device = torch.device("cpu")
        throughput(device, 2, True)
        ddp_sanity("cpu", 3, True, out)
        loader_wait("cpu", 5, True, out)
        return 0
    if not cuda:
        print("no CUDA GPU here: only the data-loader part runs, on the CPU", flush=True)
        loader_wait("cpu", min(args.loader_iters, 10), False, out)
        return 0
    torch.backends.cudnn.benchmark = True
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    throughput(torch.device("cuda"), args.steps, False)
    ddp_sanity("cuda", 20, False, out)
    loader_wait("cuda", args.loader_iters, False, out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("REIDPLUG_CACHE", "/tmp/reidplug-gpu-check-cache")
    sys.exit(main())

"""Training throughput and peak memory of the fp32 and amp trainers.

    python bench/train_throughput.py                                   # CPU, resnet_tiny 128x64
    python bench/train_throughput.py --device cuda --backbone resnet50 --size 256 128 --batch 64

Each trainer runs in a fresh process (so CPU peak RSS is its own) on random
images held in memory: the figures are the model step (reidplug's trainer
plugins: forward, fp32 losses, backward, optimizer), not data loading. On CUDA
the model and inputs are channels_last, cuDNN benchmark is on, and peak memory
is torch.cuda.max_memory_allocated. Needs torch, torchvision and this checkout
(PYTHONPATH=. is enough; no dataset, no download).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(args) -> dict:
    import torch

    from reidplug.core.config import load_config
    from reidplug.core.manager import registry
    from reidplug.reid.modeling.build import build_model

    torch.manual_seed(0)
    trainer_name = args.trainer[0]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    cfg = load_config(None, [
        f"MODEL.BACKBONE.NAME={args.backbone}", f"INPUT.SIZE_TRAIN=[{args.size[0]}, {args.size[1]}]",
        f"SOLVER.IMS_PER_BATCH={args.batch}", f"SOLVER.TRAINER={trainer_name}",
    ])
    model = build_model(cfg, args.classes).to(device)
    if cuda and args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)
    trainer = registry("trainer").get(trainer_name)(model, optimizer, cfg, device)
    trainer.channels_last = cuda and args.channels_last
    h, w = args.size
    k = 4
    batches = []
    for i in range(4):
        images = torch.rand(args.batch, 3, h, w) * 255
        targets = torch.arange(args.batch // k).repeat_interleave(k) + i
        if cuda:
            images, targets = images.pin_memory(), targets.pin_memory()
        batches.append({"images": images, "targets": targets})
    model.train()
    for i in range(args.warmup):
        trainer.run_step(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.iters):
        out = trainer.run_step(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "trainer": trainer_name, "images_per_s": args.batch * args.iters / elapsed, "peak_mib": peak,
        "step_ms": 1000 * elapsed / args.iters, "loss": out["total_loss"], "skipped": trainer.overflow_steps,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet_tiny")
    ap.add_argument("--size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=751)
    ap.add_argument("--trainer", nargs="+", default=["fp32", "amp"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = []
    for trainer in args.trainer:
        cmd = [sys.executable, __file__, "--child", "--trainer", trainer, "--backbone", args.backbone,
               "--size", *map(str, args.size), "--batch", str(args.batch), "--classes", str(args.classes),
               "--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup)]
        if not args.channels_last:
            cmd.append("--no-channels-last")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(proc.stderr)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    unit = "peak alloc MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"\n{args.backbone} {args.size[0]}x{args.size[1]}, batch {args.batch}, {rows[0]['device']}, "
          f"torch {rows[0]['torch']}, {args.iters} timed steps after {args.warmup} warm-up")
    print(f"{'trainer':8s} {'images/s':>10s} {'ms/step':>9s} {unit:>15s}")
    for r in rows:
        print(f"{r['trainer']:8s} {r['images_per_s']:10.1f} {r['step_ms']:9.1f} {r['peak_mib']:15.0f}")
    by = {r["trainer"]: r for r in rows}
    if "fp32" in by and "amp" in by:
        print(f"amp/fp32: {by['amp']['images_per_s'] / by['fp32']['images_per_s']:.2f}x throughput, "
              f"{100 * by['amp']['peak_mib'] / by['fp32']['peak_mib']:.0f}% of fp32 peak memory")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

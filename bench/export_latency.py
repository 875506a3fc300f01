"""Latency per image of exported Re-ID models (ONNX Runtime, TorchScript) against PyTorch, on the CPU.

    python bench/export_latency.py                                   # every backbone, 256x128, batches 1 and 8
    python bench/export_latency.py --backbones resnet_tiny --size 128 64 --batches 1 16

Each backbone gets a randomly initialised model (latency does not depend on the
weights) saved as a training checkpoint. `reidplug export` (dynamic batch, fp32)
writes it as ONNX and as TorchScript and checks each file against PyTorch; the
largest difference of L2-normalised features over 8 random images is printed.
Then PyTorch (eager, no grad: what `reidplug extract` runs), ONNX Runtime (CPU
provider) and the TorchScript module are timed on the same batch of random
images, in turns, for --repeats rounds (each one: 3 warm-up calls, then at least
5 calls and up to 1 s). The table gives the median over all calls and the best
call, in ms per image, with the threads each runtime was allowed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from reidplug.core.config import load_config
from reidplug.core.manager import registry
from reidplug.reid.deploy.export import DeployModule, export_model, load_runner, timings_ms
from reidplug.reid.deploy.model import deploy_config, load_trained_model
from reidplug.reid.engine.checkpoint import save_file
from reidplug.reid.modeling.build import build_model

QUICK = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "quick.yml"
RUNTIMES = ("PyTorch", "ONNX Runtime", "TorchScript")


def untrained_checkpoint(overrides: list[str], path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(load_config(QUICK, overrides), 100)
    save_file({"model": model.state_dict(), "num_classes": 100}, path)
    return path


def measure(backbone: str, size: tuple[int, int], batches: list[int], repeats: int, work: Path) -> list[dict]:
    overrides = [f"MODEL.BACKBONE.NAME={backbone}", f"INPUT.SIZE_TEST=[{size[0]}, {size[1]}]", "MODEL.DEVICE=cpu"]
    weights = untrained_checkpoint(overrides, work / f"{backbone}.pth")
    overrides.append(f"MODEL.WEIGHTS={weights}")
    runners, diffs = {}, {}
    for fmt, name in (("onnx", "ONNX Runtime"), ("torchscript", "TorchScript")):
        report = export_model(QUICK, overrides, fmt, work / f"{backbone}.{fmt}", dynamic_batch=True, latency=False,
                              echo=None)
        assert report["ok"], report
        diffs[name] = report["max_diff"]
        runners[name] = load_runner(fmt, report["output"])
    model, _ = load_trained_model(deploy_config(QUICK, overrides))
    reference = DeployModule(model, flip=False)

    def eager(x):
        with torch.no_grad():
            return reference(x)

    runners = {"PyTorch": eager, **runners}
    rows = []
    for batch in batches:
        x = torch.randint(0, 256, (batch, 3, *size), generator=torch.Generator().manual_seed(batch)).float()
        times = {name: [] for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():  # in turns, so that a busy moment hits all three alike
                times[name] += timings_ms(run, x)
        rows.append({"backbone": backbone, "size": size, "batch": batch, "diffs": diffs,
                     "median": {k: statistics.median(v) for k, v in times.items()},
                     "best": {k: min(v) for k, v in times.items()}})
        print(f"  {backbone} batch {batch}: " + ", ".join(
            f"{k} {rows[-1]['median'][k]:.2f} ms" for k in RUNTIMES), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=None, help="default: every registered backbone")
    parser.add_argument("--size", nargs=2, type=int, default=[256, 128], metavar=("H", "W"))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import onnxruntime

    backbones = args.backbones or registry("backbone").names()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-latency-") as work:
        for backbone in backbones:
            rows += measure(backbone, tuple(args.size), args.batches, args.repeats, Path(work))
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    print("\n| backbone | input | batch | PyTorch ms | ONNX Runtime ms | TorchScript ms "
          "| ONNX max diff | TorchScript max diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r['median'][k]:.2f} ({r['best'][k]:.2f})" for k in RUNTIMES]
        print(f"| {r['backbone']} | {r['size'][0]}x{r['size'][1]} | {r['batch']} | " + " | ".join(cells)
              + f" | {r['diffs']['ONNX Runtime']:.1e} | {r['diffs']['TorchScript']:.1e} |")
    print("\nms per image: median over all calls (best call)")


if __name__ == "__main__":
    main()

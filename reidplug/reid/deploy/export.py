"""`reidplug export`: a trained model as an ONNX or TorchScript file that checks itself against PyTorch.

The exported model takes a float32 [B, 3, H, W] batch of RGB images already
resized to INPUT.SIZE_TEST, with pixel values 0..255; it normalises them with
MODEL.PIXEL_MEAN/STD itself (as FastReID's exports do) and returns the features
`reidplug extract` computes (flip-averaged when TEST.FLIP.ENABLED or --flip).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reidplug import __version__
from reidplug.core.errors import UserError
from reidplug.reid.deploy.model import deploy_config, load_trained_model, weights_file
from reidplug.reid.deploy.outputs import atomic_path, check_writable

FORMATS = ("onnx", "torchscript")
OPSET = 17  # the newest opset TensorRT 8.6 reads; every operator used here exists in it
INPUT_NAME, OUTPUT_NAME = "images", "features"
# Largest difference allowed between L2-normalised exported and PyTorch features. fp16
# keeps 11 significant bits, so its features differ from fp32 ones by about 1e-4 to 1e-3.
TOLERANCE = {False: 1e-4, True: 1e-2}
DEFAULT_SAMPLES = 8
MAX_SAMPLES = 64
RUNTIME_NAMES = {"onnx": "ONNX Runtime", "torchscript": "TorchScript"}


class DeployModule(nn.Module):
    """float32 [B, 3, H, W] images in 0..255 -> float32 [B, D] test features (flip-averaged with `flip`)."""

    def __init__(self, model: nn.Module, *, flip: bool, half: bool = False):
        super().__init__()
        self.model = model.half() if half else model
        self.flip = flip
        self.half = half
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.half() if self.half else images
        feats = self.model(x).float()
        if self.flip:
            feats = (feats + self.model(torch.flip(x, dims=[3])).float()) / 2
        return feats


def check_format(fmt: str) -> str:
    """The format name, lowercased; an unknown one, or ONNX without its packages, is a one-line UserError."""
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise UserError(f"--format: unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if name == "onnx":
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"--format onnx needs {' and '.join(missing)}: pip install 'reidplug[deploy]'")
    return name


def sample_images(cfg, source=None, *, count: int = DEFAULT_SAMPLES, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(float32 [N, 3, H, W] images in 0..255 at INPUT.SIZE_TEST, where they came from) for the check.

    From `source` (what `collect_images` reads; at most MAX_SAMPLES, through the
    test-time preprocessing) or, without one, `count` images of seeded uniform noise.
    """
    if source is None:
        h, w = cfg.INPUT.SIZE_TEST
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (count, 3, h, w), generator=gen).float(), f"{count} random images"
    from reidplug.reid.data.transforms import build_transforms
    from reidplug.reid.deploy.extract import to_pil
    from reidplug.reid.deploy.inputs import collect_images

    paths = collect_images(source, option="--samples")[:MAX_SAMPLES]
    transform = build_transforms(cfg, is_train=False)
    return torch.stack([transform(to_pil(p)) for p in paths]), f"{len(paths)} images from {source}"


@contextlib.contextmanager
def quiet_exporter():
    """Silence the exporters' own warnings (deprecations, tracer notes): the check tells whether the file is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool, meta: dict) -> None:
    import onnx

    kwargs = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": OPSET}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # The TorchScript-based exporter: it needs no onnxscript and handles every backbone here.
        kwargs["dynamo"] = False
    with quiet_exporter(), torch.no_grad():
        torch.onnx.export(module, (example,), str(path), **kwargs)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    proto.doc_string = "reidplug Re-ID feature extractor"
    entry = proto.metadata_props.add()
    entry.key, entry.value = "reidplug", json.dumps(meta)
    onnx.save(proto, str(path))


def write_torchscript(module: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool, meta: dict) -> None:
    with quiet_exporter(), torch.no_grad():
        # A trace, not torch.jit.script: the backbones' Python control flow is fixed once built.
        traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(path), _extra_files={"reidplug.json": json.dumps(meta)})


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript}


def load_runner(fmt: str, path: str | Path) -> Callable[[torch.Tensor], np.ndarray]:
    """A function running the exported file on a float32 batch (on the CPU): features as a numpy array."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch, for fair latencies
        options.log_severity_level = 3  # its notes about fp16 nodes it runs in fp32 are not errors
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {INPUT_NAME: x.numpy()})[0]
    with quiet_exporter():
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(x).numpy()

    return run


def _in_batches(run, images: torch.Tensor, batch: int) -> np.ndarray:
    """Run fixed-size batches over `images`, padding the last one with copies of its final image."""
    out = []
    for s in range(0, images.shape[0], batch):
        chunk = images[s : s + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = torch.cat([chunk, chunk[-1:].expand(batch - real, *chunk.shape[1:])])
        out.append(np.asarray(run(chunk.contiguous()))[:real])
    return np.concatenate(out)


def max_normalised_difference(a, b) -> float:
    """Largest absolute difference between the L2-normalised rows of two feature matrices."""
    a = F.normalize(torch.as_tensor(np.asarray(a), dtype=torch.float32), dim=1)
    b = F.normalize(torch.as_tensor(np.asarray(b), dtype=torch.float32), dim=1)
    if a.shape != b.shape:
        raise RuntimeError(f"exported features have shape {tuple(a.shape)}, PyTorch's {tuple(b.shape)}")
    return float((a - b).abs().max())


def timings_ms(run, batch: torch.Tensor, *, min_runs: int = 5, max_runs: int = 50, budget_s: float = 1.0) -> list:
    """Wall times of `run(batch)` per image, in ms: at least `min_runs`, more while within `budget_s`."""
    # Three warm-up calls: TorchScript's executor profiles the first and optimises the graph on the second.
    for _ in range(3):
        run(batch)
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run(batch)
        times.append(1000.0 * (time.perf_counter() - t0) / batch.shape[0])
    return times


def latency_ms(run, batch: torch.Tensor, **kwargs) -> float:
    """The median of `timings_ms`."""
    return statistics.median(timings_ms(run, batch, **kwargs))


def export_model(config, overrides: Sequence, fmt: str, output, *, dynamic_batch: bool = False, fp16: bool = False,
                 batch_size: int = 1, samples=None, flip: bool | None = None, latency: bool = True,
                 echo: Callable[[str], None] | None = print) -> dict:
    """Write MODEL.WEIGHTS as `fmt` to `output`, then check it against PyTorch and time both on the CPU.

    Returns a report: the file, `max_diff` (largest difference of L2-normalised
    features over the sample images), `tolerance`, `ok`, and latencies per image
    in ms (`latency_ms`: {"pytorch": ..., "exported": ...}).
    """
    fmt = check_format(fmt)
    if batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {batch_size}")
    cfg = deploy_config(config, overrides)
    out = check_writable(output, option="--output")
    weights_file(cfg)
    images, where = sample_images(cfg, samples)
    model, weights = load_trained_model(cfg, "cpu")
    flip = cfg.TEST.FLIP.ENABLED if flip is None else bool(flip)
    reference = DeployModule(model, flip=flip)
    with torch.no_grad():
        expected = reference(images).numpy()
    dim = int(expected.shape[1])
    h, w = (int(v) for v in cfg.INPUT.SIZE_TEST)
    meta = {
        "producer": f"reidplug {__version__}", "weights": weights, "input": INPUT_NAME, "output": OUTPUT_NAME,
        "input_layout": "NCHW float32 RGB 0..255, resized to input_size; normalised inside",
        "input_size": [h, w], "feature_dim": dim, "flip": flip, "precision": "fp16" if fp16 else "fp32",
        "batch": "dynamic" if dynamic_batch else batch_size,
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN), "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "backbone": cfg.MODEL.BACKBONE.NAME, "metric": cfg.TEST.METRIC,
    }
    # A batch of 2 is traced for dynamic files, so that nothing is specialised to a single image.
    trace_batch = max(2, batch_size) if dynamic_batch else batch_size
    example = images[:1].expand(trace_batch, -1, -1, -1).contiguous()
    exported_module = DeployModule(copy.deepcopy(model), flip=flip, half=True) if fp16 else reference
    with atomic_path(out, option="--output") as tmp:
        WRITERS[fmt](exported_module, example, tmp, dynamic_batch=dynamic_batch, meta=meta)
        run = load_runner(fmt, tmp)
        if dynamic_batch:
            diffs = [max_normalised_difference(run(images), expected),
                     max_normalised_difference(_in_batches(run, images, 1), expected)]
        else:
            diffs = [max_normalised_difference(_in_batches(run, images, batch_size), expected)]
    max_diff = max(diffs)
    tolerance = TOLERANCE[fp16]
    report = {
        "format": fmt, "output": str(out), "size_mb": out.stat().st_size / 2**20, "weights": weights,
        "precision": meta["precision"], "batch": meta["batch"], "flip": flip, "feature_dim": dim,
        "input_size": [h, w], "samples": where, "max_diff": max_diff, "tolerance": tolerance,
        "ok": bool(max_diff <= tolerance), "latency_ms": None, "latency_batch": batch_size,
        "threads": torch.get_num_threads(),
    }
    if latency and report["ok"]:
        batch = images[:batch_size] if images.shape[0] >= batch_size else \
            images[:1].expand(batch_size, -1, -1, -1).contiguous()
        run = load_runner(fmt, out)
        with torch.no_grad():
            torch_ms = latency_ms(reference, batch)
        report["latency_ms"] = {"pytorch": torch_ms, "exported": latency_ms(run, batch)}
    if echo is not None:
        for line in describe(report):
            echo(line)
    return report


def describe(report: dict) -> list[str]:
    """The lines `reidplug export` prints about a report."""
    batch = "dynamic batch" if report["batch"] == "dynamic" else f"batch {report['batch']}"
    h, w = report["input_size"]
    lines = [
        f"exported {report['format']} ({report['precision']}, {batch}, {h}x{w} input, "
        f"{report['feature_dim']}-d features, flip {'on' if report['flip'] else 'off'}) -> {report['output']} "
        f"({report['size_mb']:.1f} MB)",
        f"check against PyTorch on {report['samples']}: largest difference after L2 normalisation "
        f"{report['max_diff']:.2e} (limit {report['tolerance']:.0e}): {'ok' if report['ok'] else 'FAILED'}",
    ]
    lat = report["latency_ms"]
    if lat is not None:
        lines.append(f"latency per image at batch {report['latency_batch']} (CPU, {report['threads']} threads): "
                     f"PyTorch {lat['pytorch']:.2f} ms, {RUNTIME_NAMES[report['format']]} {lat['exported']:.2f} ms")
    return lines

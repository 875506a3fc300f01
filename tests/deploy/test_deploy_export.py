"""`reidplug export`: ONNX and TorchScript files that return the features `extract` writes, and their self-check."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from deploy_helpers import QUICK, cli, save_untrained, trained_model
from optional import need

import reidplug
from reidplug.reid.deploy import export as export_mod
from reidplug.reid.deploy.export import export_model, max_normalised_difference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_model(tmp_path_factory)


def preprocessed(trained, paths):
    """The images as the exported model takes them: test-time resize, float32 NCHW in 0..255."""
    from reidplug.core.config import load_config
    from reidplug.reid.data.transforms import build_transforms
    from reidplug.reid.deploy.extract import to_pil

    transform = build_transforms(load_config(trained.config), is_train=False)
    return torch.stack([transform(to_pil(p)) for p in paths])


def test_onnx_with_dynamic_batch_returns_the_extracted_features(trained, capsys, tmp_path):
    need("onnx")
    ort = need("onnxruntime")
    out = tmp_path / "model.onnx"
    code, stdout, err = cli(capsys, *trained.args("export", "--format", "onnx", "--output", out, "--dynamic-batch",
                                                  "--samples", trained.query))
    assert code == 0, err
    diff = float(re.search(r"largest difference after L2 normalisation (\S+) \(limit 1e-04\): ok", stdout).group(1))
    assert 0 <= diff <= 1e-4
    assert re.search(r"latency per image at batch 1 \(CPU, \d+ threads\): PyTorch [\d.]+ ms, ONNX Runtime [\d.]+ ms",
                     stdout), stdout

    paths = [str(p) for p in sorted(trained.query.iterdir())]
    extracted = reidplug.FeatureExtractor(trained.config, trained.dir)(paths)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, outp.name, inp.type) == ("images", "features", "tensor(float)")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 16]
    images = preprocessed(trained, paths).numpy()
    assert max_normalised_difference(session.run(None, {"images": images})[0], extracted) <= 1e-4
    assert max_normalised_difference(session.run(None, {"images": images[:1]})[0], extracted[:1]) <= 1e-4
    meta = json.loads(session.get_modelmeta().custom_metadata_map["reidplug"])
    assert meta["input_size"] == [32, 16] and meta["feature_dim"] == extracted.shape[1] and meta["batch"] == "dynamic"


def test_fixed_batch_onnx_takes_exactly_that_batch(trained, capsys, tmp_path):
    need("onnx")
    ort = need("onnxruntime")
    out = tmp_path / "b2.onnx"
    code, stdout, err = cli(capsys, *trained.args("export", "-f", "ONNX", "-o", out, "--batch-size", 2))
    assert code == 0, err
    assert "batch 2" in stdout and "8 random images" in stdout and "latency per image at batch 2" in stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, 32, 16]
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"images": np.zeros((3, 3, 32, 16), dtype=np.float32)})


def test_torchscript_fp16_with_flip(trained, capsys, tmp_path):
    out = tmp_path / "model.ts"
    code, stdout, err = cli(capsys, *trained.args("export", "--format", "torchscript", "--output", out, "--fp16",
                                                  "--flip", "--samples", trained.query))
    assert code == 0, err
    assert "(fp16, batch 1" in stdout and "flip on" in stdout and "(limit 1e-02): ok" in stdout
    assert "TorchScript" in stdout and "warning" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice, not the file's
        module = torch.jit.load(str(out))
    assert {p.dtype for p in module.parameters()} == {torch.float16}
    paths = [str(p) for p in sorted(trained.query.iterdir())]
    with torch.no_grad():
        got = module(preprocessed(trained, paths))
    assert got.dtype == torch.float32
    flipped = reidplug.FeatureExtractor(trained.config, trained.dir, flip=True)(paths)
    assert max_normalised_difference(got, flipped) <= 1e-2
    unflipped = reidplug.FeatureExtractor(trained.config, trained.dir, flip=False)(paths)
    assert max_normalised_difference(got, unflipped) > max_normalised_difference(got, flipped)


def test_a_file_that_differs_from_pytorch_fails_the_check(trained, capsys, tmp_path, monkeypatch):
    write = export_mod.WRITERS["torchscript"]

    def write_wrong(module, example, path, **kwargs):
        # The mirrored image's features only: a plausible mistake that the check must catch.
        wrong = export_mod.DeployModule(module.model, flip=False)
        wrong.forward = lambda x: module.model(torch.flip(x, dims=[3])).float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrong, example)
        write(traced, example, path, **kwargs)

    monkeypatch.setitem(export_mod.WRITERS, "torchscript", write_wrong)
    out = tmp_path / "wrong.ts"
    code, stdout, err = cli(capsys, *trained.args("export", "-f", "torchscript", "-o", out))
    assert code == 1, (stdout, err)
    assert "FAILED" in stdout and "latency" not in stdout
    assert err.strip().startswith("error: ") and "does not match PyTorch" in err and len(err.strip().splitlines()) == 1


def test_onnx_without_its_packages_is_one_clear_error(monkeypatch):
    import importlib.util

    from reidplug.core.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(UserError, match=r"needs onnxruntime: pip install 'reidplug\[deploy\]'"):
        export_mod.check_format("onnx")
    assert export_mod.check_format("TorchScript") == "torchscript"


def _backbones():
    from reidplug.core.manager import registry

    return registry("backbone").names()


def _architectures():
    from reidplug.reid.modeling.build import META_ARCHITECTURES

    return sorted(META_ARCHITECTURES)


VARIANTS = {
    "ibn-nl-gemp": ["MODEL.BACKBONE.WITH_IBN=true", "MODEL.BACKBONE.WITH_NL=true",
                    "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPoolingP"],
    "reduction-gem-stride2": ["MODEL.HEADS.EMBEDDING_DIM=32", "MODEL.HEADS.POOL_LAYER=GeneralizedMeanPooling",
                              "MODEL.BACKBONE.LAST_STRIDE=2"],
}
# Every registered backbone and meta-architecture to ONNX. TorchScript traces the same
# modules: it is run on both residual block types (tiny/18 basic, 50 bottleneck).
# Backbones whose DEPTH is no ResNet depth: their smallest setting, enough to check the export.
NON_RESNET_DEPTHS = {"build_osnet_backbone": "x0_25", "build_vit_backbone": "small"}
# ResNet-34/101 and build_resnet_backbone are made of the same blocks as resnet18/50.
SAME_BLOCKS = {"resnet34", "resnet101", "build_resnet_backbone"}
CASES = ([("onnx", f"MODEL.BACKBONE.NAME={name}") for name in _backbones() if name not in SAME_BLOCKS]
         + [("onnx", f"MODEL.META_ARCHITECTURE={arch}") for arch in _architectures()]
         + [("torchscript", f"MODEL.BACKBONE.NAME={name}") for name in ("resnet_tiny", "resnet18", "resnet50")]
         + [(fmt, f"variant={v}") for v in VARIANTS for fmt in ("onnx", "torchscript")]
         + [("onnx", "variant=ibn-nl-gemp+resnet50")])


@pytest.mark.parametrize("fmt,case", CASES)
def test_every_backbone_passes_the_export_check(fmt, case, tmp_path):
    if fmt == "onnx":
        need("onnx")
        need("onnxruntime")
    key, _, value = case.partition("=")
    if key == "variant":
        variant, _, backbone = value.partition("+")
        overrides = [f"MODEL.BACKBONE.NAME={backbone or 'resnet_tiny'}", *VARIANTS[variant]]
    else:
        overrides = ["MODEL.BACKBONE.NAME=resnet_tiny", case] if key.endswith("ARCHITECTURE") else [case]
        if value in NON_RESNET_DEPTHS:
            overrides.append(f"MODEL.BACKBONE.DEPTH={NON_RESNET_DEPTHS[value]}")
    overrides += ["INPUT.SIZE_TEST=[64, 32]", "MODEL.DEVICE=cpu"]
    weights = save_untrained(tmp_path / "model.pth", overrides)
    # The variants also carry the flip average inside the exported graph.
    report = export_model(QUICK, [*overrides, f"MODEL.WEIGHTS={weights}"], fmt, tmp_path / f"model.{fmt}",
                          dynamic_batch=True, flip=key == "variant", latency=False, echo=None)
    assert report["flip"] == (key == "variant")
    assert report["ok"], report
    assert report["max_diff"] <= 1e-4

"""FastReID's other backbones: ResNeSt, its ViT, OSNet.

Sizes, parameter counts and features are FastReID's; ImageNet files in their
publishers' layouts (the ResNeSt repository, timm, torchreid) load, and a file
that does not fit is refused in one line.

Where the reference numbers come from: fastreid 1.4.0 (PyPI, the same
resnest.py, osnet.py and vision_transformer.py as FastReID's repository at its
HEAD), installed with --no-deps outside the project and imported with the
project's torch. Its builders gave the parameter counts. Filled with
`deterministic_fill`, its modules gave the REFERENCE_FEATURES for the input
`probe()` (FastReID's keys and key order equal ours, so the same fill reaches
the same tensors). The same script checked the layouts against timm 1.0.31
(vit_base_patch16_224, deit_base_distilled_patch16_224), torchreid 0.2.5
(osnet_x1_0, osnet_ibn_x1_0) and resnest 0.0.5 (resnest50): their state dicts
load with nothing missing or unexpected beyond the classifiers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from reidplug.core.config import load_config
from reidplug.core.errors import CheckpointError, ConfigError
from reidplug.reid.modeling import build_model
from reidplug.reid.modeling.backbones import build_backbone
from reidplug.reid.modeling.backbones import vit as vit_module
from reidplug.reid.modeling.backbones.pretrained import load_pretrained
from reidplug.reid.modeling.backbones.vit import VisionTransformer, resize_pos_embed

SMALL = [64, 32]

# Parameters of FastReID's backbones (fastreid 1.4.0's builders, see the module docstring).
FASTREID_PARAMS = {
    ("build_resnest_backbone", "50x", 1): 25_434_240,
    ("build_resnest_backbone", "50x", 2): 25_434_240,
    ("build_resnest_backbone", "101x", 1): 46_226_016,
    ("build_osnet_backbone", "x1_0", False): 1_905_828,
    ("build_osnet_backbone", "x1_0", True): 1_906_852,
    ("build_osnet_backbone", "x0_75", False): 1_087_610,
    ("build_osnet_backbone", "x0_5", False): 497_426,
    ("build_osnet_backbone", "x0_25", False): 134_792,
    # (depth, INPUT.SIZE_TRAIN, STRIDE_SIZE)
    ("build_vit_backbone", "base", (256, 128), (16, 16)): 85_746_432,
    ("build_vit_backbone", "base", (256, 128), (12, 12)): 85_809_408,
    ("build_vit_backbone", "base", (384, 128), (16, 16)): 85_795_584,
    ("build_vit_backbone", "small", (256, 128), (16, 16)): 47_933_184,
}
# ResNeSt-50 with WITH_NL: FastReID's earlier ResNeSt layout (2 non-local blocks on layer2,
# 3 on layer3) of FastReID's 1-channel Non_local, 7C+3 parameters each (C = 512, 1024):
# counted by hand on top of the count above.
RESNEST50_NL = 25_434_240 + 2 * (7 * 512 + 3) + 3 * (7 * 1024 + 3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # At these tiny sizes a second thread only adds synchronisation (tenfold on a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cfg(size=SMALL, **backbone):
    return load_config({"MODEL": {"BACKBONE": backbone}, "INPUT": {"SIZE_TRAIN": list(size), "SIZE_TEST": list(size)}})


def backbone(size=SMALL, **keys):
    return build_backbone(cfg(size, **keys))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def deterministic_fill(model) -> None:
    """Set every tensor of the state dict from its index: unit-scale weights, BN statistics near (0, 1)."""
    with torch.no_grad():
        for i, (name, t) in enumerate(model.state_dict().items()):
            if not t.is_floating_point():
                continue
            wave = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.37 + i + 1).view(t.shape)
            if name.endswith("running_var"):
                value = 1.0 + 0.5 * wave**2
            elif t.ndim == 1 and name.endswith("weight"):
                value = 1.0 + 0.1 * wave
            elif t.ndim == 1:
                value = 0.1 * wave
            else:
                value = wave / math.sqrt(t.numel() / t.shape[0])
            t.copy_(value.to(t.dtype))


def probe(n=2, size=SMALL) -> torch.Tensor:
    return torch.sin(torch.arange(n * 3 * size[0] * size[1], dtype=torch.float64) * 0.11).view(n, 3, *size).float()


def signature(out: torch.Tensor) -> list[float]:
    flat = out.double().flatten()
    return [flat.mean().item(), flat.abs().mean().item(), *flat[:: max(len(flat) // 4, 1)][:4].tolist()]


# signature(FastReID module filled by deterministic_fill (probe())) -> see the module docstring.
REFERENCE_FEATURES = {
    "resnest50_ls1": [0.5064330927334373, 0.5064330927334373, 0.3819240629673004, 1.2198774814605713,
                      0.38192394375801086, 1.2199935913085938],
    "resnest50_ls2": [0.5062839019805274, 0.5062839019805274, 0.38203001022338867, 1.1850391626358032,
                      0.38203009963035583, 1.18503999710083],
    "osnet_x1_0_ibnFalse": [0.3010038065210665, 0.3010038065210665, 0.0, 0.8942161798477173, 0.0, 0.8942102789878845],
    "osnet_x1_0_ibnTrue": [0.27596987868220646, 0.27596987868220646, 0.0, 0.7954128384590149, 0.0, 0.7954157590866089],
    "vit_tiny_stride16": [0.017486082986579277, 0.7595929335657274, 0.251041978597641, -0.7788782715797424,
                          0.24611221253871918, -0.7731805443763733],
    "vit_tiny_stride12": [0.017534206483105663, 0.7601188541812007, 0.247762069106102, -0.7887729406356812,
                          0.24691610038280487, -0.7888675332069397],
    # FastReID's "small" settings (no qkv bias, attention scaled by 768^-0.5, MLP ratio 3) at width 64.
    "vit_tiny_small_style": [0.023589793483552057, 0.8360861840992584, 2.10817289352417, 1.4323945045471191,
                             2.0931434631347656, 1.4590129852294922],
}


# ------------------------------------------------------------------ sizes and parameter counts


@pytest.mark.parametrize("key", [k for k in FASTREID_PARAMS if k[0] != "build_vit_backbone"], ids=str)
def test_parameter_counts_equal_fastreid_cnn(key):
    name, depth, option = key
    extra = {"LAST_STRIDE": option} if name == "build_resnest_backbone" else {"WITH_IBN": option}
    with torch.device("meta"):
        model = backbone(NAME=name, DEPTH=depth, **extra)
    assert n_params(model) == FASTREID_PARAMS[key]


@pytest.mark.parametrize("key", [k for k in FASTREID_PARAMS if k[0] == "build_vit_backbone"], ids=str)
def test_parameter_counts_equal_fastreid_vit(key):
    name, depth, size, stride = key
    with torch.device("meta"):
        model = backbone(size, NAME=name, DEPTH=depth, STRIDE_SIZE=list(stride))
    assert n_params(model) == FASTREID_PARAMS[key]
    grid = ((size[0] - 16) // stride[0] + 1) * ((size[1] - 16) // stride[1] + 1)
    assert model.pos_embed.shape == (1, grid + 1, 768)


def test_resnest_nonlocal_and_ibn_counts():
    with torch.device("meta"):
        nl = backbone(NAME="build_resnest_backbone", DEPTH="50x", WITH_NL=True)
        ibn = backbone(NAME="build_resnest_backbone", DEPTH="50x", WITH_IBN=True)
    assert n_params(nl) == RESNEST50_NL
    assert [len(nl.NL_2), len(nl.NL_3)] == [2, 3]
    assert n_params(ibn) == FASTREID_PARAMS[("build_resnest_backbone", "50x", 1)]
    assert "layer4.2.bn1.IN.weight" in ibn.state_dict()


@pytest.fixture(scope="module")
def resnest50():
    torch.manual_seed(0)
    return backbone(NAME="build_resnest_backbone", DEPTH="50x")


@pytest.mark.slow
def test_resnest_features_equal_fastreid(resnest50):
    # Layouts of the ResNeSt repository (and FastReID), with their shapes.
    state = resnest50.state_dict()
    assert state["conv1.0.weight"].shape == (32, 3, 3, 3) and state["bn1.weight"].shape == (64,)
    assert state["layer1.0.conv2.conv.weight"].shape == (128, 32, 3, 3)
    assert state["layer1.0.conv2.fc1.weight"].shape == (32, 64, 1, 1)
    assert state["layer2.0.downsample.1.weight"].shape == (512, 256, 1, 1)
    assert resnest50.out_channels == 2048
    model = backbone(NAME="build_resnest_backbone", DEPTH="50x", LAST_STRIDE=2)
    for net, last_stride in ((resnest50, 1), (model, 2)):
        deterministic_fill(net)
        with torch.no_grad():
            out = net.eval()(probe())
        assert out.shape == ((2, 2048, 4, 2) if last_stride == 1 else (2, 2048, 2, 1))
        assert signature(out) == pytest.approx(REFERENCE_FEATURES[f"resnest50_ls{last_stride}"], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("ibn", [False, True])
def test_osnet_features_equal_fastreid(ibn):
    model = backbone(NAME="build_osnet_backbone", DEPTH="x1_0", WITH_IBN=ibn)
    assert model.out_channels == 512
    deterministic_fill(model)
    with torch.no_grad():
        out = model.eval()(probe())
    assert out.shape == (2, 512, 4, 2)
    assert signature(out) == pytest.approx(REFERENCE_FEATURES[f"osnet_x1_0_ibn{ibn}"], rel=1e-4, abs=1e-5)


TINY_VIT = dict(embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0, qkv_bias=True, qk_scale=None)
SMALL_STYLE = {**vit_module.DEPTHS["small"], "embed_dim": 64, "depth": 2, "num_heads": 2}


@pytest.mark.parametrize(
    "reference, stride, settings",
    [("vit_tiny_stride16", (16, 16), TINY_VIT), ("vit_tiny_stride12", (12, 12), TINY_VIT),
     ("vit_tiny_small_style", (16, 16), SMALL_STYLE)],
)
def test_vit_features_equal_fastreid(reference, stride, settings):
    # FastReID's VisionTransformer at a width of 64 and a depth of 2, otherwise as built for "base" / "small".
    model = VisionTransformer(input_size=SMALL, stride=stride, drop_path_rate=0.1, **settings)
    deterministic_fill(model)
    with torch.no_grad():
        out = model.eval()(probe())
    assert out.shape == (2, 64, 1, 1)
    assert signature(out) == pytest.approx(REFERENCE_FEATURES[reference], rel=1e-4, abs=1e-5)


@pytest.fixture
def tiny_vit_depth(monkeypatch):
    """A "tiny" DEPTH for build_vit_backbone: the builder's code path at a CPU-friendly size."""
    monkeypatch.setitem(vit_module.DEPTHS, "tiny", TINY_VIT)
    return "tiny"


def test_vit_interpolates_position_grid_for_another_input_size(tiny_vit_depth):
    model = backbone(NAME="build_vit_backbone", DEPTH=tiny_vit_depth).eval()
    assert model.grid == (4, 2)
    x = probe(1, [96, 48])
    with torch.no_grad():
        out = model(x)
        # The same as a model whose grid was made for 96x48 from the interpolated embeddings.
        other = VisionTransformer(input_size=[96, 48], **TINY_VIT).eval()
        other.load_state_dict({**model.state_dict(), "pos_embed": resize_pos_embed(model.pos_embed, (4, 2), (6, 3))})
        torch.testing.assert_close(out, other(x))


# ------------------------------------------------------------------ training through the Baseline model


def train_one_step(backbone_keys: dict) -> None:
    config = load_config({
        "MODEL": {
            "BACKBONE": backbone_keys,
            "HEADS": {"WITH_BNNECK": True},
            "LOSSES": {"NAME": ["CrossEntropyLoss", "TripletLoss"], "TRI": {"HARD_MINING": True}},
        },
        "INPUT": {"SIZE_TRAIN": SMALL, "SIZE_TEST": SMALL},
    })
    torch.manual_seed(0)
    model = build_model(config, num_classes=2).train()
    before = {k: p.detach().clone() for k, p in model.backbone.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    targets = torch.tensor([0, 0, 1, 1])
    losses = model.losses(model(torch.rand(4, 3, *SMALL) * 255, targets), targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    changed = sum(not torch.equal(before[k], p) for k, p in model.backbone.named_parameters())
    assert changed > len(before) // 2
    with torch.no_grad():
        features = model.eval()(torch.rand(2, 3, *SMALL) * 255)
    assert features.shape == (2, model.backbone.out_channels)


@pytest.mark.slow
def test_resnest_trains_in_the_baseline_model():
    train_one_step({"NAME": "build_resnest_backbone", "DEPTH": "50x", "WITH_NL": True})


def test_osnet_trains_in_the_baseline_model():
    train_one_step({"NAME": "build_osnet_backbone", "DEPTH": "x0_25", "WITH_IBN": True})


def test_vit_trains_in_the_baseline_model(tiny_vit_depth):
    train_one_step({"NAME": "build_vit_backbone", "DEPTH": tiny_vit_depth, "STRIDE_SIZE": [12, 12],
                    "DROP_PATH_RATIO": 0.1, "DROP_RATIO": 0.1, "ATT_DROP_RATE": 0.1})


# ------------------------------------------------------------------ ImageNet weights in their publishers' layouts


def perturbed(state: dict) -> dict:
    g = torch.Generator().manual_seed(3)
    return {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.slow
def test_resnest_repository_weights_load(resnest50, tmp_path):
    state = perturbed(resnest50.state_dict())
    published = {**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "resnest50-528c19ca.pth"
    torch.save(published, path)
    model = backbone(NAME="build_resnest_backbone", DEPTH="50x", WITH_NL=True, PRETRAIN=True, PRETRAIN_PATH=str(path))
    loaded = model.state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value)


def test_resnet_weights_are_refused_by_resnest_in_one_line(resnest50, tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(resnest50, str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"MODEL.BACKBONE.PRETRAIN_PATH: {path} does not fit the backbone: ")
    assert "layer1.0.downsample.1.weight (file [256], model [256, 64, 1, 1])" in message


def torchreid_osnet_state(model) -> dict:
    """torchreid's osnet_x1_0 layout: the trunk, then `fc` (Linear+BN1d+ReLU to 512) and `classifier`."""
    state = perturbed(model.state_dict())
    state.update({
        "fc.0.weight": torch.zeros(512, 512), "fc.0.bias": torch.zeros(512),
        "fc.1.weight": torch.ones(512), "fc.1.bias": torch.zeros(512),
        "fc.1.running_mean": torch.zeros(512), "fc.1.running_var": torch.ones(512),
        "fc.1.num_batches_tracked": torch.tensor(0),
        "classifier.weight": torch.zeros(1000, 512), "classifier.bias": torch.zeros(1000),
    })
    return state


def test_torchreid_osnet_weights_load_and_a_narrower_file_is_refused(tmp_path):
    source = backbone(NAME="build_osnet_backbone", DEPTH="x1_0")
    assert {"conv2.0.conv2a.conv1.weight", "conv2.0.gate.fc1.bias", "conv2.2.0.conv.weight"} <= set(source.state_dict())
    state = torchreid_osnet_state(source)
    path = tmp_path / "osnet_x1_0_imagenet.pth"
    torch.save(state, path)
    model = backbone(NAME="build_osnet_backbone", DEPTH="x1_0", PRETRAIN=True, PRETRAIN_PATH=str(path))
    torch.testing.assert_close(model.conv4[1].conv2d[3].conv2.weight, state["conv4.1.conv2d.3.conv2.weight"])
    torch.testing.assert_close(model.conv5.bn.running_var, state["conv5.bn.running_var"])

    narrow = tmp_path / "osnet_x0_5_imagenet.pth"
    torch.save(backbone(NAME="build_osnet_backbone", DEPTH="x0_5").state_dict(), narrow)
    with pytest.raises(CheckpointError, match=r"does not fit the backbone: \d+ of the wrong shape: conv1\.conv\.weight "
                       r"\(file \[32, 3, 7, 7\], model \[64, 3, 7, 7\]\)") as info:
        backbone(NAME="build_osnet_backbone", DEPTH="x1_0", PRETRAIN=True, PRETRAIN_PATH=str(narrow))
    assert str(narrow) in str(info.value) and "\n" not in str(info.value)


def test_a_file_holding_a_small_part_of_the_backbone_is_refused(tmp_path):
    stem = {k: v for k, v in backbone(NAME="build_osnet_backbone", DEPTH="x0_25").state_dict().items()
            if k.startswith(("conv1.", "conv2."))}
    path = tmp_path / "stem.pth"
    torch.save(stem, path)
    with pytest.raises(CheckpointError, match=r"does not fit the backbone: \d+ missing: conv3\.0\.conv1\.conv\.weight"):
        backbone(NAME="build_osnet_backbone", DEPTH="x0_25", PRETRAIN=True, PRETRAIN_PATH=str(path))


def timm_vit_state(dim: int, grid: int = 14, distilled: bool = False) -> dict:
    """timm's ViT layout at 224x224: a 14x14 position grid (plus the class and distillation tokens), `head`."""
    source = VisionTransformer(input_size=(16 * grid, 16 * grid), **{**TINY_VIT, "embed_dim": dim})
    state = perturbed(source.state_dict())
    state["head.weight"], state["head.bias"] = torch.zeros(1000, dim), torch.zeros(1000)
    if distilled:
        state["dist_token"] = torch.full((1, 1, dim), 7.0)
        state["head_dist.weight"] = torch.zeros(1000, dim)
        pos = state["pos_embed"]
        state["pos_embed"] = torch.cat((pos[:, :1], torch.full((1, 1, dim), 7.0), pos[:, 1:]), dim=1)
    return state


@pytest.mark.parametrize("distilled", [False, True])
def test_timm_vit_weights_load_with_the_position_grid_resized(tiny_vit_depth, tmp_path, distilled):
    state = timm_vit_state(64, distilled=distilled)
    assert state["pos_embed"].shape == (1, 197 + distilled, 64)
    path = tmp_path / "vit_base_patch16_224.pth"
    torch.save({"model": state} if distilled else state, path)
    model = backbone(NAME="build_vit_backbone", DEPTH=tiny_vit_depth, STRIDE_SIZE=[12, 12],
                     PRETRAIN=True, PRETRAIN_PATH=str(path))
    assert model.grid == (5, 2)
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(model.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    pos = state["pos_embed"]
    if distilled:
        pos = torch.cat((pos[:, :1], pos[:, 2:]), dim=1)
    torch.testing.assert_close(model.pos_embed.detach(), resize_pos_embed(pos, (14, 14), (5, 2)))


def test_a_vit_file_of_another_width_is_refused_in_one_line(tiny_vit_depth, tmp_path):
    path = tmp_path / "vit_small.pth"
    torch.save(timm_vit_state(32), path)
    with pytest.raises(CheckpointError, match=r"no weight of .* fits the backbone .*: \d+ of the wrong shape: "
                       r"cls_token \(file \[1, 1, 32\], model \[1, 1, 64\]\)") as info:
        backbone(NAME="build_vit_backbone", DEPTH=tiny_vit_depth, PRETRAIN=True, PRETRAIN_PATH=str(path))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    "keys, key",
    [
        ({"NAME": "build_resnest_backbone", "DEPTH": "34x"}, "MODEL.BACKBONE.DEPTH"),
        ({"NAME": "build_resnest_backbone", "LAST_STRIDE": 3}, "MODEL.BACKBONE.LAST_STRIDE"),
        ({"NAME": "build_osnet_backbone", "DEPTH": "50x"}, "MODEL.BACKBONE.DEPTH"),
        ({"NAME": "build_osnet_backbone", "DEPTH": "x1_0", "WITH_NL": True}, "MODEL.BACKBONE.WITH_NL"),
        ({"NAME": "build_osnet_backbone", "DEPTH": "x1_0", "LAST_STRIDE": 2}, "MODEL.BACKBONE.LAST_STRIDE"),
        ({"NAME": "build_vit_backbone", "DEPTH": "large"}, "MODEL.BACKBONE.DEPTH"),
        ({"NAME": "build_vit_backbone", "DEPTH": "base", "WITH_IBN": True}, "MODEL.BACKBONE.WITH_IBN"),
        ({"NAME": "build_vit_backbone", "DEPTH": "base", "STRIDE_SIZE": [16]}, "MODEL.BACKBONE.STRIDE_SIZE"),
        ({"NAME": "build_vit_backbone", "DEPTH": "base", "DROP_PATH_RATIO": 1.5}, "MODEL.BACKBONE.DROP_PATH_RATIO"),
    ],
)
def test_bad_settings_are_one_line_config_errors(keys, key):
    with torch.device("meta"), pytest.raises(ConfigError, match=key) as info:
        backbone(**keys)
    assert "\n" not in str(info.value)

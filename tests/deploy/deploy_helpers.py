"""What the deploy tests share: a model trained once per session on the tiny synthetic set, and CLI calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import TINY_REID, cli_in_process

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "configs" / "synthetic" / "quick.yml"
TRAIN = [*TINY_REID, "SOLVER.MAX_EPOCH=2", "SOLVER.STEPS=[1]"]


@dataclass(frozen=True)
class Trained:
    dir: Path  # the training folder: config.yaml, model_XXXX.pth, model_best.pth, ...
    config: Path  # the config.yaml the training wrote
    data: Path  # the synthetic set it trained on: query/, bounding_box_test/

    @property
    def query(self) -> Path:
        return self.data / "query"

    @property
    def gallery(self) -> Path:
        return self.data / "bounding_box_test"

    def args(self, command: str, *more) -> list[str]:
        """`reidplug COMMAND config.yaml MODEL.WEIGHTS=<training folder> MORE...` as a list of arguments."""
        return [command, str(self.config), f"MODEL.WEIGHTS={self.dir}", *map(str, more)]


_trained: dict[str, Trained] = {}


def trained_model(tmp_path_factory) -> Trained:
    """`reidplug train` on the tiny synthetic set (2 epochs), once per test session."""
    if "model" not in _trained:
        from reidplug.core.config import load_config
        from reidplug.reid.api import train
        from reidplug.reid.data.datasets.synthetic import SyntheticMarket

        out = tmp_path_factory.mktemp("deploy-trained")
        train(str(QUICK), [*TRAIN, f"OUTPUT_DIR={out}"], echo=False)
        data = SyntheticMarket.from_config(load_config(out / "config.yaml"), "").root
        _trained["model"] = Trained(out, out / "config.yaml", Path(data))
    return _trained["model"]


def save_untrained(path: Path, overrides=(), num_classes: int = 4) -> Path:
    """A randomly initialised model of quick.yml + `overrides`, saved the way training saves checkpoints."""
    import torch

    from reidplug.core.config import load_config
    from reidplug.reid.engine.checkpoint import save_file
    from reidplug.reid.modeling.build import build_model

    torch.manual_seed(0)
    model = build_model(load_config(QUICK, list(overrides)), num_classes)
    # Non-trivial batch-norm statistics, as a trained model has: fresh ones (mean 0, var 1) hide mistakes.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    save_file({"model": model.state_dict(), "num_classes": num_classes, "epoch": 0}, path)
    return path


cli = cli_in_process  # (exit code, stdout, stderr) of `reidplug ARGS`, run in this process

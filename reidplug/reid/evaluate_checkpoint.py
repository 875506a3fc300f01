"""`reidplug eval`: a checkpoint's metrics on each test set, and optional rank-list pictures."""

from __future__ import annotations

import contextlib
from pathlib import Path

from reidplug.core import progress
from reidplug.core.errors import CheckpointError, ConfigError


def find_weights(path: str) -> Path:
    """MODEL.WEIGHTS may name a .pth file, a training folder or a trial checkpoint folder.

    Needs no torch, so that a wrong path is reported at once.
    """
    if not path:
        raise ConfigError("set MODEL.WEIGHTS to a checkpoint (file or folder) to evaluate", key="MODEL.WEIGHTS")
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoint.pth", p / "model_best.pth", p / "model_final.pth"):
            if candidate.is_file():
                return candidate
        marker = p / "last_checkpoint"
        if marker.is_file():
            return p / marker.read_text().strip()
        raise CheckpointError(f"MODEL.WEIGHTS: no checkpoint found in folder {p}")
    if not p.exists():
        raise CheckpointError(f"MODEL.WEIGHTS: no checkpoint at {p}")
    return p


def load_model(cfg, device, weights_path: Path | None = None):
    """The model of cfg with the weights of MODEL.WEIGHTS (its classifier size taken from the file).

    The file is reidplug's checkpoint or FastReID's (`{"model": state_dict}`, same parameter
    names); one that does not fit is one line naming the keys that differ.
    """
    from reidplug.core.config import with_params
    from reidplug.reid.engine.checkpoint import classes_in, fit_weights, load_file, model_weights
    from reidplug.reid.modeling.build import build_model

    path = weights_path if weights_path is not None else find_weights(cfg.MODEL.WEIGHTS)
    state = load_file(path, key="MODEL.WEIGHTS")
    weights = model_weights(state, f"MODEL.WEIGHTS: {path}")
    num_classes = int(state.get("num_classes", 0) or 0) or classes_in(weights) or 1
    if cfg.MODEL.BACKBONE.PRETRAIN:
        # Every weight comes from the checkpoint: the ImageNet file need not be on this machine.
        cfg = with_params(cfg, {"MODEL.BACKBONE.PRETRAIN": False}, source="<MODEL.WEIGHTS>")
    model = build_model(cfg, num_classes)
    fit_weights(model, weights, source=f"MODEL.WEIGHTS: {path}")
    return model.to(device).eval(), path


def run_evaluation(cfg, *, vis: int = 0, echo: bool = True, weights_path: Path | None = None) -> dict:
    """Metrics of MODEL.WEIGHTS (or `weights_path`, already found) on each of DATASETS.TESTS."""
    from reidplug.reid.data.build import build_test_loader
    from reidplug.reid.engine.training import resolve_device
    from reidplug.reid.evaluation.evaluator import ReidEvaluator, extract_features, format_table

    device = resolve_device(cfg.MODEL.DEVICE)
    model, path = load_model(cfg, device, weights_path)
    all_results = {}
    for name in cfg.DATASETS.TESTS:
        loader, num_query = build_test_loader(cfg, name)
        evaluator = ReidEvaluator(cfg, num_query)
        # the features of a real test set take minutes on a CPU: a bar on a terminal, lines in a log
        with progress.stages() if echo else contextlib.nullcontext() as report:
            feats, pids, camids = extract_features(model, loader, device, cfg.TEST.FLIP.ENABLED, progress=report)
            results = evaluator.evaluate(feats, pids, camids, progress=report)
        all_results[name] = results
        if echo:
            print(format_table(results, name), flush=True)
        if vis:
            out = Path(cfg.OUTPUT_DIR) / "vis" / name
            paths = _visualise(cfg, loader, feats, pids, camids, num_query, vis, out)
            if echo:
                print(f"rank lists and CMC curve: {out} ({len(paths)} files)", flush=True)
    return all_results


def _visualise(cfg, loader, feats, pids, camids, num_query, n, out: Path) -> list:
    from reidplug.report.reid_vis import draw_rank_lists, plot_cmc
    from reidplug.reid.evaluation.distance import compute_distance
    from reidplug.reid.evaluation.rank import evaluate_rank

    paths = [record[0] for record in loader.dataset.records] if hasattr(loader.dataset, "records") else None
    if paths is None:
        raise ConfigError("this test set does not expose image paths for --vis", key="DATASETS.TESTS")
    dist = compute_distance(feats[:num_query], feats[num_query:], cfg.TEST.METRIC)
    out.mkdir(parents=True, exist_ok=True)
    files = draw_rank_lists(dist, paths[:num_query], paths[num_query:], pids[:num_query], pids[num_query:],
                            camids[:num_query], camids[num_query:], out, num_queries=n, topk=10)
    r = evaluate_rank(dist, pids[:num_query], pids[num_query:], camids[:num_query], camids[num_query:])
    files.append(plot_cmc(r["cmc"], out / "cmc.png", label=cfg.MODEL.BACKBONE.NAME))
    return files

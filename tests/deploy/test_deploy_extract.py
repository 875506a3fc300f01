"""`reidplug extract` and `reidplug.FeatureExtractor` on a model trained on the synthetic set."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import run_cli
from deploy_helpers import cli, trained_model
from PIL import Image

import reidplug

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_model(tmp_path_factory)


def evaluation_features(trained, flip=False):
    """{path: feature} of the query split, as `reidplug eval` computes them."""
    from reidplug.core.config import load_config
    from reidplug.reid.data.build import build_test_loader
    from reidplug.reid.evaluate_checkpoint import load_model
    from reidplug.reid.evaluation.evaluator import extract_features

    cfg = load_config(trained.config, [f"MODEL.WEIGHTS={trained.dir}"])
    model, _ = load_model(cfg, torch.device("cpu"))
    loader, num_query = build_test_loader(cfg, "SyntheticMarket")
    feats, _, _ = extract_features(model, loader, "cpu", flip)
    paths = [r[0] for r in loader.dataset.records[:num_query]]
    return dict(zip(paths, feats[:num_query]))


def test_extract_cli_writes_the_evaluation_features_with_ids(trained, tmp_path):
    out = tmp_path / "features" / "query.npz"
    proc = run_cli(*trained.args("extract", "--input", trained.query, "--output", out, "--quiet"))
    assert proc.returncode == 0, proc.stderr
    assert "pids and camids from the file names" in proc.stdout

    data = np.load(out)  # no pickles: loadable with the default allow_pickle=False
    assert set(data.files) == {"features", "paths", "pids", "camids"}
    files = sorted(trained.query.iterdir())
    assert list(data["paths"]) == [str(p) for p in files]
    assert data["features"].dtype == np.float32 and data["features"].shape[0] == len(files)
    for path, pid, camid in zip(files, data["pids"], data["camids"]):
        name_pid, name_cam = path.name.split("_")[:2]
        assert (pid, camid) == (int(name_pid), int(name_cam[1]) - 1)
    reference = evaluation_features(trained)
    expected = torch.stack([reference[str(p)] for p in files]).numpy()
    np.testing.assert_allclose(data["features"], expected, rtol=1e-4, atol=1e-5)


def test_flip_averages_with_the_mirrored_image(trained, capsys, tmp_path):
    plain, flipped = tmp_path / "plain.npz", tmp_path / "flip.npz"
    assert cli(capsys, *trained.args("extract", "-i", trained.query, "-o", plain, "-q"))[0] == 0
    assert cli(capsys, *trained.args("extract", "-i", trained.query, "-o", flipped, "--flip", "-q"))[0] == 0
    reference = evaluation_features(trained, flip=True)
    got = np.load(flipped)
    expected = torch.stack([reference[p] for p in got["paths"]]).numpy()
    np.testing.assert_allclose(got["features"], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got["features"], np.load(plain)["features"], atol=1e-3)


def test_feature_extractor_reads_paths_pil_images_and_arrays_alike(trained):
    extractor = reidplug.FeatureExtractor(trained.config, trained.dir, device="cpu")
    files = sorted(trained.query.iterdir())[:3]
    from_paths = extractor([str(p) for p in files])
    assert isinstance(from_paths, torch.Tensor) and from_paths.dtype == torch.float32 and from_paths.shape[0] == 3
    images = [Image.open(p).convert("RGB") for p in files]
    torch.testing.assert_close(extractor(images), from_paths, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(extractor([np.asarray(im) for im in images]), from_paths, rtol=1e-4, atol=1e-5)
    single = extractor(np.asarray(images[1]))
    assert single.shape == (1, from_paths.shape[1])
    torch.testing.assert_close(single[0], from_paths[1], rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        extractor(np.zeros((32, 16, 3), dtype=np.float32))


def test_batches_of_any_size_give_the_same_features(trained):
    files = [str(p) for p in sorted(trained.query.iterdir())]
    one = reidplug.FeatureExtractor(trained.config, trained.dir, batch_size=1)(files)
    many = reidplug.FeatureExtractor(trained.config, trained.dir, batch_size=7)(files)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)


def test_glob_and_list_inputs_and_names_without_ids(trained, capsys, tmp_path):
    files = sorted(trained.query.iterdir())[:4]
    listed = tmp_path / "list.txt"
    (tmp_path / "imgs").mkdir()
    for i, p in enumerate(files):
        shutil.copy(p, tmp_path / "imgs" / f"person{i}.jpg")
    listed.write_text("# query images\n" + "".join(f"imgs/person{i}.jpg 7\n" for i in range(4)) + "\n")
    by_list, by_glob = tmp_path / "list.npz", tmp_path / "glob.npz"
    assert cli(capsys, *trained.args("extract", "-i", listed, "-o", by_list, "-q"))[0] == 0
    code, out, _ = cli(capsys, *trained.args("extract", "-i", tmp_path / "imgs" / "*.jpg", "-o", by_glob, "-q"))
    assert code == 0 and "pids" not in out
    a, b = np.load(by_list), np.load(by_glob)
    assert set(a.files) == {"features", "paths"}  # the names carry no ids
    assert [p.split("/")[-1] for p in a["paths"]] == [f"person{i}.jpg" for i in range(4)]
    np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)
    reference = evaluation_features(trained)
    np.testing.assert_allclose(a["features"], torch.stack([reference[str(p)] for p in files]).numpy(),
                               rtol=1e-4, atol=1e-5)

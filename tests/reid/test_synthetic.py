"""The synthetic dataset: Market-1501 layout, determinism, caching, and the `reidplug data` commands."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reidplug.core.config import load_config
from reidplug.core.errors import ConfigError, DataError
from reidplug.core.manager import DEFAULT_PLUGINS, get_plugin_manager
from reidplug.reid.data import synthetic
from reidplug.reid.data.datasets import Market1501, SyntheticMarket
from reidplug.reid.data.synthetic import generate

SMALL = {"ids": 8, "cams": 3, "seed": 1, "height": 32, "width": 16}
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "market"
    generate(out, progress=False, **SMALL)
    return out


def files(root: Path) -> dict[str, list[Path]]:
    return {split: sorted((root / split).iterdir()) for split in SPLITS}


def test_market_layout_and_names(small):
    found = files(small)
    for split, paths in found.items():
        assert paths, split
        for p in paths:
            assert NAME.match(p.name), p.name
            with Image.open(p) as img:
                assert img.format == "JPEG" and img.size == (16, 32)
    counts = synthetic.read_meta(small)["counts"]
    assert counts == {split: len(paths) for split, paths in found.items()}


def test_identities_junk_and_distractors(small):
    pids = {split: [int(NAME.match(p.name).group(1)) for p in paths] for split, paths in files(small).items()}
    train, query, gallery = (set(pids[s]) for s in SPLITS)
    assert -1 in train and -1 in gallery, "junk in train and gallery, for the loader to drop"
    assert 0 in gallery and 0 not in train | query, "distractors in the gallery only"
    people_train, people_test = train - {-1, 0}, (query | gallery) - {-1, 0}
    assert not people_train & people_test, "train and test identities are disjoint"
    assert len(people_train) == 4 and people_test == query == {p for p in gallery if p > 0}
    assert people_train | people_test == set(range(1, 9))


def test_queries_are_one_per_identity_and_camera_with_a_cross_camera_positive(small):
    seen = defaultdict(list)
    for p in files(small)["query"]:
        m = NAME.match(p.name)
        seen[int(m.group(1)), int(m.group(2))].append(p)
    assert all(len(v) == 1 for v in seen.values())
    gallery = {(int(NAME.match(p.name).group(1)), int(NAME.match(p.name).group(2))) for p in files(small)["bounding_box_test"]}
    for pid, cam in seen:
        assert any(g_pid == pid and g_cam != cam for g_pid, g_cam in gallery)


def test_market_loader_reads_it_unchanged(small):
    d = Market1501(small)
    assert {pid for _, pid, _ in d.train}.isdisjoint({pid for _, pid, _ in d.query})
    assert -1 not in {pid for _, pid, _ in d.train + d.query + d.gallery}
    assert 0 in {pid for _, pid, _ in d.gallery}
    assert {cam for _, _, cam in d.train + d.query + d.gallery} <= {0, 1, 2}
    assert d.verify() == len(d.train) + len(d.query) + len(d.gallery)


def test_same_seed_same_bytes_other_seed_other_images(small, tmp_path):
    again = tmp_path / "again"
    generate(again, progress=False, **SMALL)
    a, b = files(small), files(again)
    for split in SPLITS:
        assert [p.name for p in a[split]] == [p.name for p in b[split]]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a[split], b[split]))
    other = tmp_path / "other"
    generate(other, progress=False, **{**SMALL, "seed": 2})
    first = lambda root: np.asarray(Image.open(files(root)["query"][0]), dtype=np.float32)
    assert [p.name for p in files(other)["query"]] != [p.name for p in a["query"]] or not np.array_equal(first(other), first(small))


def test_identities_share_colours_in_different_arrangements():
    """The design that defeats colour histograms: many identities wear the same colours, arranged differently."""
    people = [synthetic.make_identity(0, pid) for pid in range(1, 121)]
    assert people == [synthetic.make_identity(0, pid) for pid in range(1, 121)]
    by_colours = defaultdict(set)
    for p in people:
        by_colours[frozenset((p.top, p.bottom))].add((p.top, p.bottom, p.pattern, p.bag, p.bottom_kind))
    shared = [looks for looks in by_colours.values() if len(looks) > 1]
    assert len(shared) >= 10, "colour pairs worn by several identities"
    swapped = sum(1 for looks in shared if len({(t, b) for t, b, *_ in looks}) > 1)
    assert swapped >= 5, "the same two colours as top/bottom and as bottom/top"
    # and yet almost every identity differs from every other in its main features
    assert len({(p.top, p.top2, p.pattern, p.bottom, p.bottom_kind, p.bag, p.hat) for p in people}) >= len(people) - 2


def test_rendering_is_deterministic_and_identity_dependent():
    cam = synthetic.make_camera(0, 0)
    render = lambda pid, k: np.asarray(
        synthetic.render(synthetic.make_identity(0, pid), cam, synthetic._rng(0, 9, pid, k), 64, 32), dtype=np.int16
    )
    assert np.array_equal(render(1, 0), render(1, 0))
    assert not np.array_equal(render(1, 0), render(1, 1))
    # same scene and noise, another person: the pixels that change are the person's
    a = np.asarray(synthetic.render(synthetic.make_identity(0, 1), cam, synthetic._rng(0, 9, 0), 64, 32), dtype=np.int16)
    b = np.asarray(synthetic.render(synthetic.make_identity(0, 2), cam, synthetic._rng(0, 9, 0), 64, 32), dtype=np.int16)
    assert np.abs(a - b).max() > 60


def test_existing_folder_is_reused_or_refused(small, tmp_path):
    before = {p: p.stat().st_mtime_ns for split in files(small).values() for p in split}
    assert generate(small, progress=False, **SMALL) == synthetic.read_meta(small)["counts"]
    assert before == {p: p.stat().st_mtime_ns for split in files(small).values() for p in split}
    with pytest.raises(DataError, match="is not this synthetic dataset"):
        generate(small, progress=False, **{**SMALL, "seed": 5})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="full: exists"):
        generate(tmp_path / "full", progress=False, **SMALL)
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name], "no temporary folder left behind"


def test_parameter_checks():
    with pytest.raises(ConfigError) as err:
        generate("/nonexistent", ids=4, cams=10, seed=0)
    assert err.value.key == "DATASETS.SYNTH.CAMS"
    with pytest.raises(ConfigError) as err:
        generate("/nonexistent", ids=1, cams=2, seed=0)
    assert err.value.key == "DATASETS.SYNTH.IDS"


def test_progress_is_plain_text_off_a_terminal(tmp_path, capsys):
    generate(tmp_path / "p", ids=2, cams=2, seed=0, height=16, width=8)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "\x1b" not in err[0] and "17/17 images" in err[0], err


def test_synthetic_market_generates_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDPLUG_CACHE", str(tmp_path / "env-cache"))
    d = SyntheticMarket(ids=4, cams=2, seed=0, height=16, width=8, progress=False)
    key = synthetic.params_key(ids=4, cams=2, seed=0, height=16, width=8)
    assert d.root == str(tmp_path / "env-cache" / "synthetic" / key)
    assert f"v{synthetic.GENERATOR_VERSION}" in key
    calls = []
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: calls.append(a))
    again = SyntheticMarket(ids=4, cams=2, seed=0, height=16, width=8, progress=False)
    assert calls == [] and again.train == d.train

    cfg = load_config(None, [f"DATASETS.SYNTH.CACHE_DIR={tmp_path / 'cfg-cache'}", "DATASETS.SYNTH.IDS=4", "DATASETS.SYNTH.CAMS=2",
                             "DATASETS.SYNTH.HEIGHT=16", "DATASETS.SYNTH.WIDTH=8"])
    monkeypatch.undo()
    from_cfg = SyntheticMarket.from_config(cfg, "ignored")
    assert from_cfg.root.startswith(str(tmp_path / "cfg-cache" / "synthetic"))
    assert [Path(p).name for p, _, _ in from_cfg.train] == [Path(p).name for p, _, _ in d.train]


def test_synthetic_market_allows_more_cameras_than_market(tmp_path):
    d = SyntheticMarket(ids=6, cams=8, seed=0, height=16, width=8, cache_dir=tmp_path, progress=False)
    assert max(cam for _, _, cam in d.train + d.query + d.gallery) > 5


def cli_group():
    mine = "reidplug.plugins.data_commands"
    pm = get_plugin_manager(entry_points=False, builtins=DEFAULT_PLUGINS + ((mine,) if mine not in DEFAULT_PLUGINS else ()))

    @click.group()
    def cli():
        pass

    pm.hook.register_commands(cli=cli)
    return cli


def test_data_synth_and_show_commands(tmp_path):
    cli, runner = cli_group(), CliRunner()
    out = tmp_path / "made"
    result = runner.invoke(cli, ["data", "synth", "--out", str(out), "--ids", "4", "--cams", "7", "--seed", "3",
                                 "--height", "32", "--width", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"SyntheticMarket ({out})" and lines[3].split()[:3] == ["train", "|", "2"]
    assert synthetic.read_meta(out)["params"]["cams"] == 7
    shown = runner.invoke(cli, ["data", "show", str(out), "--verify"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"SyntheticMarket ({out})") and "images decode" in shown.output
    missing = runner.invoke(cli, ["data", "show", str(tmp_path / "none"), "--name", "DukeMTMC"])
    assert isinstance(missing.exception, DataError) and str(tmp_path / "none") in str(missing.exception)
    assert runner.invoke(cli, ["data", "synth", "--out", str(out), "--cams", "12"]).exit_code == 2


def test_reidplug_data_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    from reidplug.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["data", "show", str(tmp_path / "none")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "none") in err and "DATASETS.ROOT" in err

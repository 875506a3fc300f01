"""Bad inputs to extract, query and export: one line, exit code 2, nothing written."""

from __future__ import annotations

import pytest
from deploy_helpers import QUICK, cli, save_untrained


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An untrained checkpoint, a folder of one image, an empty folder and a plain file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("deploy-bad")
    weights = save_untrained(root / "model.pth", ["MODEL.BACKBONE.NAME=resnet_tiny"])
    (root / "imgs").mkdir()
    Image.new("RGB", (16, 32), (90, 120, 200)).save(root / "imgs" / "0001_c1s1_000001_00.jpg")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("")
    (root / "a_file").write_text("not a folder")
    return root, weights


def args(root, weights, command, *more):
    base = [str(QUICK), "MODEL.BACKBONE.NAME=resnet_tiny", "INPUT.SIZE_TEST=[32, 16]", "MODEL.DEVICE=cpu",
            f"MODEL.WEIGHTS={weights}"]
    return [command, *base, *(str(m).format(root=root) for m in more)]


CASES = {
    "extract-missing-weights": (
        "extract", {"weights": "{root}/nowhere/model_final.pth"}, ["-i", "{root}/imgs", "-o", "{root}/out.npz"],
        ["MODEL.WEIGHTS", "no checkpoint at", "nowhere/model_final.pth"]),
    "extract-empty-folder": (
        "extract", {}, ["-i", "{root}/empty", "-o", "{root}/out.npz"], ["empty: no images", "(--input)"]),
    "extract-empty-list": (
        "extract", {}, ["-i", "{root}/notes.txt", "-o", "{root}/out.npz"], ["notes.txt: this list names no image"]),
    "extract-no-such-input": (
        "extract", {}, ["-i", "{root}/missing", "-o", "{root}/out.npz"], ["missing: no such file or folder"]),
    "extract-glob-matches-nothing": (
        "extract", {}, ["-i", "{root}/imgs/*.png", "-o", "{root}/out.npz"], ["no image file matches this pattern"]),
    "extract-unwritable-output": (
        "extract", {}, ["-i", "{root}/imgs", "-o", "{root}/a_file/out.npz"],
        ["cannot write here", "a_file is a file, not a folder", "(--output)"]),
    "extract-output-is-a-folder": (
        "extract", {}, ["-i", "{root}/imgs", "-o", "{root}/empty"], ["cannot write here: it is a folder"]),
    "query-missing-weights": (
        "query", {"weights": "{root}/nowhere.pth"}, ["--query", "{root}/imgs", "--gallery", "{root}/imgs",
                                                   "-o", "{root}/ranks"], ["MODEL.WEIGHTS", "no checkpoint at"]),
    "query-empty-gallery": (
        "query", {}, ["--query", "{root}/imgs", "--gallery", "{root}/empty", "-o", "{root}/ranks"],
        ["empty: no images", "(--gallery)"]),
    "query-unwritable-output": (
        "query", {}, ["--query", "{root}/imgs", "--gallery", "{root}/imgs", "-o", "{root}/a_file"],
        ["cannot write here: it is a file", "(--output)"]),
    "query-bad-topk": (
        "query", {}, ["--query", "{root}/imgs", "--gallery", "{root}/imgs", "-o", "{root}/ranks", "--topk", "0"],
        ["--topk: must be at least 1"]),
    "export-unknown-format": (
        "export", {}, ["--format", "tensorrt", "-o", "{root}/model.trt"],
        ["unknown export format 'tensorrt'", "onnx, torchscript"]),
    "export-missing-weights": (
        "export", {"weights": "{root}/gone.pth"}, ["--format", "torchscript", "-o", "{root}/model.ts"],
        ["MODEL.WEIGHTS", "no checkpoint at", "gone.pth"]),
    "export-unwritable-output": (
        "export", {}, ["--format", "torchscript", "-o", "{root}/a_file/model.ts"], ["cannot write here"]),
    "export-empty-samples": (
        "export", {}, ["--format", "torchscript", "-o", "{root}/model.ts", "--samples", "{root}/empty"],
        ["empty: no images", "(--samples)"]),
}


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, setup, capsys):
    root, weights = setup
    command, change, more, expected = CASES[case]
    if "weights" in change:
        weights = change["weights"].format(root=root)
    before = snapshot(root)
    code, out, err = cli(capsys, *args(root, weights, command, *more))
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert snapshot(root) == before, "a bad input wrote something"

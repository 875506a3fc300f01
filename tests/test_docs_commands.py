"""Every `reidplug` command that README.md and docs/*.md show runs as shown.

The commands are read from the documents' shell code blocks (and from inline
code that is a whole command: no placeholder such as CONFIG or DIR, and a path
argument), each document as one shell session: its `cd DIR` and `NAME=value`
lines apply to the commands after them, `\\` continues a line, and in a
transcript only the `$ ` lines are commands. Each command is either in COMMANDS,
which says what it needs prepared and which sizes to shrink, or in EXCLUDED with
the reason; a command that is in neither fails
`test_every_documented_command_is_run_or_excluded`, and so does an entry whose
command the documents no longer show.

`test_documented_commands_run` runs COMMANDS in their order, in a working
folder laid out like this checkout (configs/, plugins_contrib/), through a
shell with this environment's `reidplug` and `python` first on PATH. Each run is
the documented command with size overrides appended (epochs, identities, image
and batch sizes, trial counts), never other paths or other code paths, except
for two things said where they are done: the bag-of-tricks ResNet-50 becomes
the small ResNet of the synthetic configs (SMALL_BACKBONE), and absolute
/tmp/ paths go into the test's own scratch folder (SCRATCH_PATHS).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# ------------------------------------------------------------------ sizes

TINY_IMAGES = ("INPUT.SIZE_TRAIN=[32, 16]", "INPUT.SIZE_TEST=[32, 16]", "INPUT.PADDING.SIZE=2",
               "TEST.IMS_PER_BATCH=64")
# The synthetic set drawn at 32x16; 12 identities, 6 of them for training.
TINY_SYNTH = ("DATASETS.SYNTH.IDS=12", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16")
# ResNet-50 takes seconds per step on 2 CPU cores at any input size: the bag-of-tricks
# recipes train the small ResNet of the synthetic configs here. Everything else is theirs.
SMALL_BACKBONE = ("MODEL.BACKBONE.NAME=resnet_tiny",)
# The recipes' 8 loader processes would each start torch; a batch of 16 is 4 identities of 4.
TINY_R50 = (*SMALL_BACKBONE, *TINY_IMAGES, "DATALOADER.NUM_WORKERS=0", "SOLVER.IMS_PER_BATCH=16")
TINY_SYNTH_DATA = ("--ids", "4", "--height", "32", "--width", "16")  # options: the last one given wins

# Absolute /tmp/ paths in the documents (a plugin installed into /tmp/site, a report
# written to /tmp/r) go into the test's scratch folder, so that the test owns what it writes.
SCRATCH_PATHS = "/tmp/"

# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Run:
    shrink: tuple[str, ...] = ()  # appended to the command
    needs: tuple[str, ...] = ()  # artefacts that _prepare makes before it runs
    expect: tuple[str, ...] = ()  # shown in its output
    absent: tuple[str, ...] = ()  # not shown in its output
    creates: tuple[str, ...] = ()  # files it writes (relative to the working folder, or under /tmp/)


# In running order: a later command may use what an earlier one wrote.
COMMANDS: dict[str, Run] = {
    "reidplug data synth --out datasets/synthetic": Run(TINY_SYNTH_DATA, expect=("SyntheticMarket",)),
    "reidplug data synth --out datasets/synthetic --ids 120 --cams 6 --seed 0": Run(
        TINY_SYNTH_DATA, expect=("SyntheticMarket",)),
    "reidplug data show datasets/Market-1501-v15.09.15": Run(needs=("market",), expect=("train",)),
    "reidplug config show configs/market1501/bagtricks_R50.yml SOLVER.BASE_LR=0.001": Run(
        expect=("BASE_LR: 0.001",)),
    "reidplug config validate my_search.yml": Run(needs=("my_search.yml",), expect=("my_search.yml: ok",)),
    "reidplug plugins": Run(expect=("reidplug plugins",)),
    "reidplug plugins --json": Run(expect=('"searchers.random"',)),
    "REIDPLUG_DISABLE_PLUGINS=skopt,searchers.grid reidplug plugins": Run(absent=("searchers.grid",)),
    "PYTHONPATH=/tmp/site python -m reidplug plugins --json": Run(needs=("/tmp/site",), expect=('"skopt"',)),
    "PYTHONPATH=/tmp/site REIDPLUG_DISABLE_PLUGINS=skopt python -m reidplug plugins --json": Run(
        needs=("/tmp/site",), absent=('"skopt"',)),
    "reidplug train configs/market1501/bagtricks_R50.yml": Run(
        (*TINY_R50, "SOLVER.MAX_EPOCH=1"), needs=("market",),
        expect=("| Market1501 |", "weights: logs/market1501/bagtricks_R50/model_final.pth"),
        creates=("logs/market1501/bagtricks_R50/model_final.pth",)),
    # the weights of the training above
    "reidplug eval configs/market1501/bagtricks_R50.yml MODEL.WEIGHTS=logs/market1501/bagtricks_R50/model_final.pth":
        Run(TINY_R50, needs=("market",), expect=("| Market1501 |",)),
    "reidplug train configs/synthetic/quick.yml": Run(
        (*TINY_SYNTH, *TINY_IMAGES, "SOLVER.IMS_PER_BATCH=16", "SOLVER.MAX_EPOCH=1"),
        expect=("weights: logs/synthetic/quick/model_final.pth",)),
    # the weights of the training above
    "reidplug extract configs/synthetic/quick.yml MODEL.WEIGHTS=logs/synthetic/quick/model_final.pth "
    "--input photos/ --output feats.npz": Run(TINY_IMAGES, needs=("market", "photos"), creates=("feats.npz",)),
    "reidplug query configs/synthetic/quick.yml MODEL.WEIGHTS=logs/synthetic/quick/model_final.pth "
    "--query person.jpg --gallery photos/ --topk 10": Run(TINY_IMAGES, needs=("market", "photos")),
    "reidplug export configs/synthetic/quick.yml MODEL.WEIGHTS=logs/synthetic/quick/model_final.pth "
    "--format onnx --output reid.onnx --dynamic-batch": Run(TINY_IMAGES, expect=(": ok",), creates=("reid.onnx",)),
    # docs/deploy.md, a session in /tmp/q
    "reidplug train configs/synthetic/quick.yml OUTPUT_DIR=/tmp/q SOLVER.MAX_EPOCH=2 SOLVER.STEPS=[1] "
    "TEST.EVAL_PERIOD=2 SOLVER.CHECKPOINT_PERIOD=2 DATASETS.SYNTH.IDS=40": Run(
        ("DATASETS.SYNTH.IDS=20", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16", *TINY_IMAGES,
         "SOLVER.IMS_PER_BATCH=16", "SOLVER.MAX_EPOCH=1"), creates=("/tmp/q/model_final.pth",)),
    # 20 identities, the fewest whose query set has the image a later command names
    "reidplug data synth --out /tmp/q/data --ids 40": Run(("--ids", "20", "--height", "32", "--width", "16")),
    **{f"reidplug {cmd}": Run() for cmd in (
        "extract config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --input data/bounding_box_test "
        "--output deploy/gallery.npz",
        "query config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --query data/query --gallery data/bounding_box_test "
        "--topk 10",
        "query config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --query data/query/0006_c2s4_000074_04.jpg "
        "--gallery data/bounding_box_test --rerank --output deploy/one",
        "export config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --format onnx --output deploy/reid.onnx "
        "--dynamic-batch --samples data/query",
        "export config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --format torchscript --output deploy/reid.ts "
        "--samples data/query",
        "export config.yaml MODEL.WEIGHTS=/tmp/q/model_final.pth --format onnx --output deploy/reid16.onnx --fp16 "
        "--batch-size 8 --samples data/query",
    )},
    # The searched batches (32, 64 images of 4 or 8 instances) need 16 training identities.
    "reidplug run configs/quickstart.yml": Run(
        ("DATASETS.SYNTH.IDS=32", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16", *TINY_IMAGES,
         "SOLVER.MAX_EPOCH=2", "TUNE.NUM_TRIALS=2"),
        expect=("Best config: logs/quickstart/best_config.yaml",),
        creates=("logs/quickstart/best_config.yaml", "logs/quickstart/report/report.html")),
    # the best configuration of the search above
    "reidplug train logs/quickstart/best_config.yaml": Run(("SOLVER.MAX_EPOCH=1",), expect=("weights: ",)),
    "reidplug resume logs/quickstart": Run(expect=("best_config.yaml",)),
    "reidplug report logs/my_search": Run(needs=("logs/my_search",), creates=("logs/my_search/report/report.html",)),
    "reidplug report logs/my_search --out /tmp/r --json > report.json": Run(
        needs=("logs/my_search",), creates=("report.json", "/tmp/r/report.html")),
}

EXCLUDED: dict[str, str] = {
    "reidplug run configs/tune/asha_cluster.yml":
        "a Ray cluster of several machines sharing /mnt/reid (docs/cluster.md); "
        "the Ray executor on one machine is tests/test_ray_executor.py",
    "reidplug train configs/market1501/sbs_R50-ibn.yml --num-gpus 4":
        "4 GPUs and Market-1501; 2 gloo CPU processes are tests/reid/test_distributed.py",
    "reidplug train configs/market1501/sbs_R50-ibn.yml --num-gpus 4 --num-machines 2 --machine-rank 0 "
    "--dist-url tcp://10.0.0.1:29500": "two machines with 4 GPUs each (docs/cluster.md)",
    "reidplug train configs/market1501/sbs_R50-ibn.yml --num-gpus 4 --num-machines 2 --machine-rank 1 "
    "--dist-url tcp://10.0.0.1:29500": "two machines with 4 GPUs each (docs/cluster.md)",
    "reidplug run --config-file search_trial.yml --num-trials 20 --srch-algo hyperopt":
        "FastTune's own file with a ResNet-34-IBN ImageNet file; tests/test_fasttune_config.py runs it "
        "(tests/fasttune_configs/search_trial.yml) on a DukeMTMC tree",
}

# ------------------------------------------------------------------ reading the documents

SHELL_LANGS = {"", "bash", "sh", "shell", "console", "text"}
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(/[A-Z][A-Z0-9_]*)*")  # CONFIG, DIR, OUTPUT_DIR/NAME


@dataclass
class Shown:
    places: list[str]  # "README.md:9"
    cwd: str | None  # where an earlier `cd` of the same document moved to


def _command(text: str, variables: dict[str, str] | None = None) -> str | None:
    """`text` as one normalised command line if it runs reidplug, else None; `$NAME`s of
    `variables` (set earlier in the same document) are expanded."""
    text = re.sub(r"(^|\s)#.*$", "", text).strip()
    for name, value in (variables or {}).items():
        text = re.sub(rf"\${{?{name}\b}}?", value, text)
    words = text.split()
    rest = words
    while rest and ENV_ASSIGNMENT.fullmatch(rest[0]):
        rest = rest[1:]
    if rest[:1] == ["reidplug"] or rest[:3] == ["python", "-m", "reidplug"]:
        return " ".join(words)
    return None


def _whole_inline_command(command: str) -> bool:
    """Inline code that can be run as it stands, not a mention of a command or of its syntax."""
    args = command.split()[2:]
    if any(PLACEHOLDER.fullmatch(a) or "..." in a or a[:1] in "[<" for a in args):
        return False
    return any("/" in a or a.endswith((".yml", ".yaml")) for a in args if not a.startswith("-"))


def _blocks(doc: Path):
    """("code", [(lineno, line), ...]) for each shell code block (fenced or indented) and
    ("prose", [(lineno, line)]) for each other line."""
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"\s*(```|~~~)\s*(\S*)", line)
        if fence:
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence.group(1)):
                j += 1
            if fence.group(2).lower() in SHELL_LANGS:
                yield "code", [(k + 1, lines[k].strip()) for k in range(i + 1, j)]
            i = j + 1
        elif line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            yield "code", [(k + 1, lines[k].strip()) for k in range(i, j) if lines[k].strip()]
            i = j
        else:
            yield "prose", [(i + 1, line)]
            i += 1


def _shell_lines(block: list[tuple[int, str]]):
    """The block's shell lines: continued lines joined; in a transcript, only the `$ ` lines."""
    if any(line.startswith("$ ") for _, line in block):
        block = [(n, line[2:]) for n, line in block if line.startswith("$ ")]
    joined: list[tuple[int, str]] = []
    for n, line in block:
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1].rstrip() + " " + line)
        else:
            joined.append((n, line))
    return joined


def documented_commands() -> dict[str, Shown]:
    """Each command the documents show, read as a shell session per document
    (its `cd`s and `NAME=value` lines carry on to the commands after them)."""
    found: dict[str, Shown] = {}

    def record(cmd: str, where: str, cwd: str | None) -> None:
        found.setdefault(cmd, Shown([], cwd)).places.append(where)

    for doc in DOCS:
        variables: dict[str, str] = {}
        cwd: str | None = None
        for kind, block in _blocks(doc):
            if kind == "prose":
                for lineno, line in block:
                    for span in re.findall(r"`([^`]+)`", line):
                        if (cmd := _command(span)) and _whole_inline_command(cmd):
                            record(cmd, f"{doc.name}:{lineno}", None)
                continue
            for lineno, line in _shell_lines(block):
                words = re.sub(r"(^|\s)#.*$", "", line).split()
                if len(words) == 2 and words[0] == "cd":
                    cwd = words[1] if cwd is None or words[1].startswith("/") else f"{cwd}/{words[1]}"
                elif words and all(ENV_ASSIGNMENT.fullmatch(w) for w in words):
                    variables.update(w.split("=", 1) for w in words)
                elif cmd := _command(line, variables):
                    record(cmd, f"{doc.name}:{lineno}", cwd)
    return found


def test_every_documented_command_is_run_or_excluded():
    shown = documented_commands()
    new = {cmd: where for cmd, where in shown.items() if cmd not in COMMANDS and cmd not in EXCLUDED}
    assert not new, f"documented commands neither in COMMANDS nor in EXCLUDED: {new}"
    gone = [cmd for cmd in [*COMMANDS, *EXCLUDED] if cmd not in shown]
    assert not gone, f"no longer in the documents (drop them from the table): {gone}"
    assert all(EXCLUDED.values())


def test_the_reader_finds_code_blocks_and_whole_inline_commands():
    shown = documented_commands()
    assert "README.md:9" in shown["reidplug train configs/market1501/bagtricks_R50.yml"].places
    assert shown["PYTHONPATH=/tmp/site python -m reidplug plugins --json"].places[0].startswith("plugins.md:")
    assert "reidplug train logs/quickstart/best_config.yaml" in shown  # inline, in the quickstart paragraph
    assert not [c for c in shown if "DIR" in c.split() or "CONFIG" in c.split()]  # syntax, not commands
    assert not [c for c in shown if c.startswith("[reidplug]")]  # console output shown in reporting.md


# ------------------------------------------------------------------ running them


def _readme_search_yaml() -> str:
    """The search config the README shows and then validates as my_search.yml."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    found = [b for b in blocks if "my_search.yml" in b.splitlines()[0]]
    assert len(found) == 1, "the README's my_search.yml block"
    return found[0]


def _prepare(name: str, work: Path, scratch: Path, run) -> None:
    if name == "market":
        # Market-1501's folders and file names: the synthetic generator's layout, at 12 identities
        from reidplug.reid.data import synthetic

        made = scratch / "market-source"
        synthetic.generate(made, ids=12, cams=3, seed=0, height=32, width=16, progress=False)
        for split in ("bounding_box_train", "query", "bounding_box_test"):
            shutil.copytree(made / split, work / "datasets" / "Market-1501-v15.09.15" / split)
    elif name == "my_search.yml":
        (work / "my_search.yml").write_text(_readme_search_yaml())
    elif name == "/tmp/site":
        # docs/plugins.md's install line, from a copy so that the checkout stays clean
        run(f"python -m pip install --quiet --no-deps --no-build-isolation --target {SCRATCH_PATHS}site "
            "plugins_contrib/reidplug-skopt")
        assert list((scratch / "site").glob("reidplug_skopt*.dist-info")), "the plugin is not in site/"
    elif name == "photos":
        # photos/ and person.jpg: a few pedestrian images, with Market-1501 names
        shutil.copytree(work / "datasets" / "Market-1501-v15.09.15" / "query", work / "photos")
        shutil.copy(sorted((work / "photos").glob("*.jpg"))[0], work / "person.jpg")
    elif name == "logs/my_search":
        # an experiment folder: the quickstart's, run above
        shutil.copytree(work / "logs" / "quickstart", work / "logs" / "my_search")
    else:
        raise AssertionError(f"no preparation named {name!r}")


def _with_shrink(command: str, shrink: tuple[str, ...]) -> str:
    """The command with `shrink` appended to its arguments (before a redirection)."""
    head, sep, tail = command.partition(" > ")
    return " ".join([head, *map(shlex.quote, shrink)]) + (f"{sep}{tail}" if sep else "")


@pytest.mark.slow
def test_documented_commands_run(tmp_path):
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    shutil.copytree(ROOT / "plugins_contrib", work / "plugins_contrib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    bindir = Path(sys.executable).parent
    assert (bindir / "reidplug").exists(), f"no reidplug script next to {sys.executable}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("REIDPLUG_DATASETS", "REIDPLUG_DISABLE_PLUGINS", "PYTHONPATH", "REIDPLUG_QUIET")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    def run(line: str, cwd: str | None = None) -> subprocess.CompletedProcess:
        line = line.replace(SCRATCH_PATHS, f"{scratch}/")
        where = work / cwd.replace(SCRATCH_PATHS, f"{scratch}/") if cwd else work
        return subprocess.run(line, shell=True, cwd=where, env=env, capture_output=True, text=True, timeout=600)

    shown = documented_commands()

    prepared: set[str] = set()
    for command, spec in COMMANDS.items():
        for need in spec.needs:
            if need not in prepared:
                _prepare(need, work, scratch, lambda line: _check(run(line), line))
                prepared.add(need)
        line = _with_shrink(command, spec.shrink)
        done = _check(run(line, shown[command].cwd if command in shown else None), line)
        out = done.stdout + done.stderr
        for text in spec.expect:
            assert text in out, f"{line}: {text!r} not in its output:\n{out}"
        for text in spec.absent:
            assert text not in out, f"{line}: {text!r} in its output:\n{out}"
        for path in spec.creates:
            where = Path(path.replace(SCRATCH_PATHS, f"{scratch}/"))
            assert (work / where).is_file(), f"{line}: wrote no {path}"
    assert json.loads((work / "report.json").read_text())


def _check(done: subprocess.CompletedProcess, line: str) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{line}\nexit code {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done

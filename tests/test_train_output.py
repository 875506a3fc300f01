"""What `reidplug train` and `reidplug eval` show: a first line at once, a bar on a terminal,
plain lines in logs (also in a search's trial logs), and where the weights went."""

from __future__ import annotations

import io
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_REID

from reidplug.core import progress
from reidplug.core.plural import plural
from reidplug.reid.engine.checkpoint import load_file

ROOT = Path(__file__).resolve().parents[1]
QUICK = "configs/synthetic/quick.yml"
FIRST_LINE_S = 2.0  # the requirement, measured from the start of the process
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def reidplug_argv() -> list[str]:
    """The console script users run; `python -m reidplug` where it is not installed next to python."""
    script = Path(sys.executable).parent / "reidplug"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reidplug"]


def env_without_ci() -> dict:
    """This environment, minus what would make a terminal look like a log (CI, rich's TTY_* overrides)."""
    drop = ("CI", "REIDPLUG_QUIET", "REIDPLUG_DATASETS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TERM"] = "xterm-256color"
    return env


def timed(args: list[str]) -> tuple[float, str, str, int]:
    """Run reidplug ARGS with stdout and stderr on one pipe: seconds to its first line, that line,
    the rest of the output, the exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen([*reidplug_argv(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env_without_ci())
    first = proc.stdout.readline()
    seconds = time.perf_counter() - start
    rest = proc.stdout.read()
    return seconds, first, rest, proc.wait(timeout=300)


def on_a_terminal(args: list[str], *, cwd=ROOT, timeout=300) -> str:
    """Run reidplug ARGS with a 160x40 pseudo-terminal as stdin, stdout and stderr; returns what it drew."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([*reidplug_argv(), *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env=env_without_ci(), close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer has gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    assert proc.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


# ------------------------------------------------------------------ the weights and the first line


@pytest.mark.slow
def test_train_then_eval_as_printed_first_lines_at_once(tmp_path):
    out = tmp_path / "run"
    seconds, first, rest, code = timed(["train", QUICK, *TINY_REID, f"OUTPUT_DIR={out}", "SOLVER.MAX_EPOCH=1"])
    assert code == 0, first + rest
    assert seconds < FIRST_LINE_S, f"first line after {seconds:.2f} s: {first!r}"
    assert first.startswith("preparing to train resnet_tiny on SyntheticMarket")

    # Off a terminal: plain lines, an epoch line, counts in words, the weights last.
    assert "\x1b" not in rest and "━" not in rest
    assert re.search(r"^epoch 1/1 iter \d+ loss [\d.]+ lr \S+ [\d.]+ img/s eta \d:\d\d:\d\d$", rest, re.M), rest
    count = re.search(r"for 1 epoch \((\d+) (iterations?) each\)", rest)
    assert count and plural(int(count.group(1)), "iteration").split()[1] == count.group(2), rest
    lines = rest.splitlines()
    final = out / "model_final.pth"
    assert lines[-2] == f"weights: {final}"
    assert os.path.samefile(final, out / "model_0001.pth")
    state = load_file(final)
    assert {"model", "optimizer", "epoch"} <= set(state) and state["epoch"] == 1

    # The evaluation command it prints works as printed and finds the same numbers.
    hint = lines[-1]
    assert hint.startswith("evaluate them with: reidplug eval ")
    args = shlex.split(hint.removeprefix("evaluate them with: reidplug "))
    seconds, first, rest, code = timed(args)
    assert code == 0, first + rest
    assert seconds < FIRST_LINE_S, f"first line after {seconds:.2f} s: {first!r}"
    assert first.strip() == f"evaluating {final} on SyntheticMarket"
    table_row = [line for line in lines if line.startswith("| SyntheticMarket")]
    assert table_row and table_row[-1] in rest.splitlines()


def test_eval_of_missing_weights_fails_in_one_line_before_loading_anything(tmp_path):
    seconds, first, rest, code = timed(["eval", QUICK, f"MODEL.WEIGHTS={tmp_path / 'nope.pth'}"])
    assert code == 2 and rest == ""
    assert first.strip() == f"error: MODEL.WEIGHTS: no checkpoint at {tmp_path / 'nope.pth'}"
    assert seconds < FIRST_LINE_S


def test_data_synth_says_what_it_makes_at_once(tmp_path):
    out = tmp_path / "synth"
    seconds, first, rest, code = timed(["data", "synth", "--out", str(out), "--ids", "4", "--height", "32",
                                        "--width", "16"])
    assert code == 0, first + rest
    assert seconds < FIRST_LINE_S, f"first line after {seconds:.2f} s: {first!r}"
    assert first.strip() == f"synthetic set {out}: 4 identities, 6 cameras, seed 0, 32x16"
    assert f"SyntheticMarket ({out})" in rest


# ------------------------------------------------------------------ a terminal, a log, a trial's log


@pytest.mark.slow
def test_a_terminal_gets_a_bar_and_the_epoch_lines(tmp_path):
    # 12 training identities: a few steps per epoch, so that the bar is drawn between them.
    drawn = on_a_terminal(["train", QUICK, *TINY_REID, "DATASETS.SYNTH.IDS=24", "SOLVER.MAX_EPOCH=2",
                           f"OUTPUT_DIR={tmp_path}"])
    screen = ANSI.sub("", drawn).replace("\r", "\n")
    bar = re.compile(r"epoch [12]/2 ━+\S* +\d+/\d+ it +loss \d+\.\d{4} +[\d.]+ img/s +eta \d:\d\d:\d\d")
    assert bar.search(screen), screen[-3000:]
    # the finished epochs stay above the bar, as in a log
    assert re.search(r"^epoch 1/2 iter \d+ loss ", screen, re.M) and re.search(r"^epoch 2/2 iter ", screen, re.M)
    assert f"weights: {tmp_path / 'model_final.pth'}" in screen
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows if r["type"] == "eval"] == [2]


@pytest.mark.slow
def test_trials_of_a_search_on_a_terminal_write_plain_lines_into_their_logs(tmp_path):
    # The quickstart's searched batches need 16 training identities (32 in all).
    on_a_terminal(["run", "configs/quickstart.yml", "TUNE.NUM_TRIALS=1", "TUNE.MAX_CONCURRENT=1",
                   "SOLVER.MAX_EPOCH=2", "DATASETS.SYNTH.IDS=32", "DATASETS.SYNTH.HEIGHT=32", "DATASETS.SYNTH.WIDTH=16",
                   "INPUT.SIZE_TRAIN=[32, 16]", "INPUT.SIZE_TEST=[32, 16]", f"OUTPUT_DIR={tmp_path}", "--no-report"])
    log = (tmp_path / "quickstart" / "trial_0001" / "log.txt").read_text()
    assert re.search(r"^epoch 2/2 iter \d+ loss [\d.]+ lr \S+ [\d.]+ img/s eta ", log, re.M), log
    assert "\x1b" not in log and "━" not in log and "\r" not in log


@pytest.mark.slow
def test_training_in_process_chooses_bar_or_lines_by_its_streams(tmp_path, monkeypatch):
    """A terminal gets the bar and a line per epoch, even when a periodic row came with the epoch's
    last step; streams redirected into a file, as in a trial, get the periodic rows as plain lines."""
    from reidplug.core.config import load_config
    from reidplug.reid.engine import hooks
    from reidplug.reid.engine.training import ReIDTraining

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    cfg = load_config(None, [*TINY_REID, f"OUTPUT_DIR={tmp_path}", "SOLVER.MAX_EPOCH=2"])

    out, err = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert hooks.on_terminal()
    ReIDTraining(cfg, tmp_path / "tty", echo=True, progress_period_s=0.0).train()
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    screen = ANSI.sub("", out.getvalue() + err.getvalue()).replace("\r", "\n")
    assert "━" in screen
    assert re.search(r"^epoch 1/2 iter \d+ loss ", screen, re.M), screen
    assert re.search(r"^epoch 2/2 iter \d+ loss ", screen, re.M), screen
    assert not re.search(r"^epoch 1/2 iter 1 ", screen, re.M), "a periodic line under the bar"

    with open(tmp_path / "log.txt", "w") as log:
        monkeypatch.setattr(sys, "stdout", log)
        monkeypatch.setattr(sys, "stderr", log)
        assert not hooks.on_terminal()
        ReIDTraining(cfg, tmp_path / "log", echo=True, progress_period_s=0.0).train()
    text = (tmp_path / "log.txt").read_text()
    assert re.search(r"^epoch 1/2 iter 1 loss ", text, re.M), text  # a periodic line, within the epoch
    assert re.search(r"^epoch 2/2 iter \d+ loss ", text, re.M) and "\x1b" not in text and "━" not in text


# ------------------------------------------------------------------ helpers


def test_counts_in_words():
    assert plural(1, "epoch") == "1 epoch"
    assert plural(2, "epoch") == "2 epochs"
    assert plural(0, "trial") == "0 trials"
    assert plural(1, "identity", "identities") == "1 identity"
    assert plural(3, "identity", "identities") == "3 identities"


def test_plain_progress_says_early_that_long_work_started(monkeypatch):
    """The first plain line after FIRST_S, then one every `every_s`; work done within FIRST_S
    writes only its closing line."""
    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    monkeypatch.delenv(progress.QUIET_ENV, raising=False)

    def lines_at(times):
        clock[0] = 100.0
        stream = io.StringIO()
        with progress.bar("synthesising", total=100, unit="images", stream=stream, force_mode="plain") as b:
            for i, t in enumerate(times, 1):
                clock[0] = 100.0 + t
                b.update(i)
        return stream.getvalue().splitlines()

    quick = lines_at([0.1, 0.2, 0.3])
    assert len(quick) == 1 and quick[0].startswith("synthesising: 3/100 images in")
    slow = lines_at([0.2, progress.FIRST_S + 0.1, 5.0, 9.0, progress.FIRST_S + progress.EVERY_S + 0.2])
    assert [line.split(" images")[0] for line in slow] == [
        "synthesising: 2/100", "synthesising: 5/100", "synthesising: 5/100"]

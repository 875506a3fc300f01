"""FastReID's train_net.py and FastTune's tune_net.py command lines on the native commands."""

from __future__ import annotations

import pytest

from reidplug.cli import main
from reidplug.core.errors import UserError
from reidplug.fastreid_argv import rewrite, yacs_value


@pytest.mark.parametrize("argv,native", [
    ("train --config-file c.yml", "train c.yml"),
    ("train --config-file=c.yml --resume SOLVER.BASE_LR 0.001 MODEL.DEVICE cuda:0",
     'train c.yml --resume SOLVER.BASE_LR=0.001 MODEL.DEVICE="cuda:0"'),
    ("train --config-file c.yml --num-gpus 4 --num-machines 2 --machine-rank 1 --dist-url tcp://h:9",
     "train c.yml --num-gpus 4 --num-machines 2 --machine-rank 1 --dist-url tcp://h:9"),
    ("train --config-file c.yml --eval-only MODEL.WEIGHTS logs/model_final.pth",
     'eval c.yml MODEL.WEIGHTS="logs/model_final.pth"'),
    ("train c.yml --eval-only", "eval c.yml"),
    ("train --config-file c.yml SOLVER.AMP.ENABLED False TEST.IMS_PER_BATCH=32 OUTPUT_DIR logs/a",
     'train c.yml SOLVER.AMP.ENABLED=false TEST.IMS_PER_BATCH=32 OUTPUT_DIR="logs/a"'),
    ("run --config-file c.yml --num-trials 20 --srch-algo hyperopt",
     "run c.yml TUNE.NUM_TRIALS=20 TUNE.SEARCHER=hyperopt TUNE.SCHEDULER=asha"),
    ("run --config-file c.yml --srch-algo hyperopt --pbt", "run c.yml TUNE.SEARCHER=hyperopt TUNE.SCHEDULER=pbt"),
    ("run --config-file c.yml --srch-algo bohb --resume", "run c.yml --resume TUNE.SCHEDULER=bohb"),
    ("run --config-file c.yml --srch-algo grid", "run c.yml TUNE.SEARCHER=grid"),
    ("run --config-file c.yml", "run c.yml"),  # without --srch-algo the config's TUNE section decides
    # the native form is never touched
    ("train c.yml SOLVER.BASE_LR=0.1 --resume", "train c.yml SOLVER.BASE_LR=0.1 --resume"),
    ("report logs/x --config-file y", "report logs/x --config-file y"),
])
def test_fastreid_command_lines_map_onto_native_ones(argv, native):
    assert rewrite(argv.split()) == native.split()


def test_opts_values_are_read_as_yacs_reads_them():
    assert yacs_value('("Market1501",)') == '["Market1501"]'
    assert yacs_value("[256,128]") == "[256, 128]"
    assert (yacs_value("1e-3"), yacs_value("True"), yacs_value("50x")) == ("0.001", "true", '"50x"')
    assert yacs_value("__import__('os')") == "\"__import__('os')\""  # a string, never evaluated


@pytest.mark.parametrize("argv,fragment", [
    ("train --config-file c.yml --eval-only --resume", "--resume: has no effect with --eval-only"),
    ("train --config-file c.yml --eval-only --num-gpus 2", "evaluation runs in one process"),
    ("train --config-file c.yml --srch-algo hyperopt", "a FastTune option"),
    ("run --config-file c.yml --num-gpus 2", "TUNE.RESOURCES_PER_TRIAL.GPU"),
    ("run --config-file c.yml --srch-algo optuna", "'optuna' is not available; known: bohb, grid, hyperopt"),
    ("run --config-file c.yml --srch-algo bohb --pbt", "PBT only with --srch-algo hyperopt"),
    ("run --config-file c.yml --num-trials many", "--num-trials: expected a positive integer"),
    ("train --config-file c.yml SOLVER.BASE_LR", "SOLVER.BASE_LR has no value"),
    ("train --config-file c.yml solver.base_lr 0.1", "is not a config key"),
    ("train --config-file c.yml --opts X.Y 1", "unknown option '--opts'"),
    ("train --eval-only", "name the config with --config-file"),
])
def test_what_cannot_map_is_refused_with_one_line(argv, fragment):
    with pytest.raises(UserError) as info:
        rewrite(argv.split())
    assert fragment in str(info.value) and "\n" not in str(info.value)


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def test_main_runs_the_mapped_train_and_eval(tmp_path, monkeypatch, capsys):
    import reidplug.reid.api as api

    calls = []
    monkeypatch.setattr(api, "train", lambda config, overrides, **kw: calls.append(("train", config, overrides, kw)))
    monkeypatch.setattr(api, "evaluate", lambda config, overrides, **kw: calls.append(("eval", config, overrides)))
    main(["train", "--config-file", "c.yml", "--num-gpus", "2", "--resume", "SOLVER.BASE_LR", "0.01"])
    main(["train", "--config-file", "c.yml", "--eval-only", "MODEL.WEIGHTS", "m.pth"])
    (_, config, overrides, kw), evaluated = calls
    assert (config, overrides, kw["num_gpus"], kw["resume"]) == ("c.yml", ["SOLVER.BASE_LR=0.01"], 2, True)
    assert evaluated == ("eval", "c.yml", ['MODEL.WEIGHTS="m.pth"'])
    # and a bad opts value is blamed on the command line, through the real loader
    cfg = tmp_path / "c.yml"
    cfg.write_text("SOLVER:\n  MAX_EPOCH: 2\n")
    monkeypatch.undo()
    code, err = _cli(["train", "--config-file", str(cfg), "SOLVER.BASE_LR", "fast"], capsys)
    assert code == 2 and err == "error: <command line>: SOLVER.BASE_LR: expected a number, got 'fast'\n"


def test_main_runs_the_mapped_search(monkeypatch, capsys):
    import reidplug.core.tuner as tuner

    class Stop(UserError):
        pass

    def fake(config, overrides, resume, fresh):
        raise Stop(f"tuner {config} {' '.join(overrides)} resume={resume}")

    monkeypatch.setattr(tuner, "Tuner", fake)
    code, err = _cli(["run", "--config-file", "c.yml", "--num-trials", "3", "--srch-algo", "hyperopt", "-q"], capsys)
    assert code == 2
    assert "tuner c.yml TUNE.NUM_TRIALS=3 TUNE.SEARCHER=hyperopt TUNE.SCHEDULER=asha" in err


def test_an_unknown_native_option_points_to_the_equivalent(capsys):
    code, err = _cli(["train", "configs/quickstart.yml", "--epochs", "3"], capsys)
    assert code == 2 and err == "error: reidplug train: No such option '--epochs'; here that is SOLVER.MAX_EPOCH=N\n"
    code, err = _cli(["run", "configs/quickstart.yml", "--frobnicate"], capsys)
    assert code == 2 and "KEY=VALUE" in err and "docs/fastreid.md" in err and err.count("\n") == 1

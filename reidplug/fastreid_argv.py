"""FastReID's and FastTune's command lines, rewritten into reidplug's before click parses them.

    reidplug train --config-file X [--eval-only] [--resume] [--num-gpus N] ... [KEY VALUE]...
        (FastReID's tools/train_net.py)  ->  reidplug train X [--resume] [--num-gpus N] ... [KEY=VALUE]...
                                         or  reidplug eval X [KEY=VALUE]...  with --eval-only
    reidplug run --config-file X --num-trials N --srch-algo A [--pbt] [KEY VALUE]...
        (FastTune's tune_net.py)         ->  reidplug run X TUNE.NUM_TRIALS=N TUNE.SEARCHER=... [KEY=VALUE]...

A command line is rewritten only when it uses one of FastReID's flags, so the native
form (`reidplug train X KEY=VALUE`) is never touched. Trailing `KEY VALUE` pairs are
read as yacs reads them: a Python literal (number, bool, tuple, list) where the value
parses as one, else the string itself.
"""

from __future__ import annotations

import ast
import json
import re

from reidplug.core.errors import UserError

# Flags only FastReID's or FastTune's scripts have; one of them marks a FastReID command line.
FASTREID_FLAGS = ("--config-file", "--eval-only", "--num-trials", "--srch-algo", "--pbt")
# train_net.py's launcher flags, passed to the native train command as they are.
LAUNCH_FLAGS = ("--num-gpus", "--num-machines", "--machine-rank", "--dist-url")
_VALUED = {"--config-file", "--num-trials", "--srch-algo", *LAUNCH_FLAGS}
_KEY = re.compile(r"[A-Z_][A-Z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")  # OUTPUT_DIR, SOLVER.BASE_LR

# FastTune's --srch-algo values (tune_net.py): hyperopt searches under ASHA (under PBT with
# --pbt); bohb is TuneBOHB with HyperBandForBOHB, which is reidplug's bohb scheduler.
SEARCH_ALGOS = {
    "hyperopt": {"TUNE.SEARCHER": "hyperopt", "TUNE.SCHEDULER": "asha"},
    "bohb": {"TUNE.SCHEDULER": "bohb"},
}


def rewrite(argv: list[str]) -> list[str]:
    """The native argv for a FastReID-style one; any other argv unchanged."""
    if not argv or argv[0] not in ("train", "run", "eval"):
        return list(argv)
    if not any(_flag(tok) in FASTREID_FLAGS for tok in argv[1:]):
        return list(argv)
    command, flags, opts = argv[0], {}, []
    rest = list(argv[1:])
    positional, native = [], []
    while rest:
        tok = rest.pop(0)
        name = _flag(tok)
        if name is None and not (tok.startswith("-") and len(tok) > 1 and not _number(tok)):
            positional.append(tok)
            continue
        name = name or tok
        takes_value = False if name in ("-h", "--help") else _native_options().get(name)
        if takes_value is not None and name not in (*_VALUED, "--resume"):
            # reidplug's own options (-q, --fresh, --vis N) mix with FastReID's
            native.append(tok)
            if takes_value and "=" not in tok and rest:
                native.append(rest.pop(0))
            continue
        if name in _VALUED:
            if "=" in tok:
                value = tok.split("=", 1)[1]
            elif rest:
                value = rest.pop(0)
            else:
                raise UserError(f"reidplug {command}: {name} needs a value")
            flags[name] = value
        elif name in ("--eval-only", "--resume", "--pbt"):
            flags[name] = True
        else:
            raise UserError(f"reidplug {command}: unknown option {tok!r} in a FastReID-style command line; "
                            f"known: {', '.join(sorted({*FASTREID_FLAGS, *LAUNCH_FLAGS, '--resume'}))} "
                            f"(see docs/fastreid.md)")
    config = flags.pop("--config-file", None)
    if config is None:
        if not positional or "=" in positional[0] or _KEY.match(positional[0]):
            raise UserError(f"reidplug {command}: name the config with --config-file FILE (or as the first argument)")
        config = positional.pop(0)
    opts = _pairs(command, positional)
    if command == "run":
        out = _run(config, flags, opts)
    elif flags.pop("--eval-only", False) or command == "eval":
        out = _eval(config, flags, opts)
    else:
        out = _train(config, flags, opts)
    return out[:2] + native + out[2:]


def _number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _native_options() -> dict[str, bool]:
    """Option name -> whether it takes a value, over reidplug's train, eval and run commands."""
    from reidplug.cli import cli

    out: dict[str, bool] = {}
    for command in ("train", "eval", "run"):
        for param in cli.commands[command].params:
            for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
                if name.startswith("-"):
                    out[name] = not getattr(param, "is_flag", False)
    return out


def _flag(tok: str) -> str | None:
    return tok.split("=", 1)[0] if tok.startswith("--") else None


def _pairs(command: str, tokens: list[str]) -> list[str]:
    """yacs's `KEY VALUE ...` opts (native `KEY=VALUE` items pass through) as KEY=VALUE overrides."""
    out = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if "=" in tok and _KEY.match(tok.split("=", 1)[0]):
            out.append(tok)
            i += 1
            continue
        if not _KEY.match(tok):
            raise UserError(f"reidplug {command}: {tok!r} is not a config key (FastReID's opts are KEY VALUE pairs)")
        if i + 1 >= len(tokens):
            raise UserError(f"reidplug {command}: {tok} has no value (FastReID's opts are KEY VALUE pairs)")
        out.append(f"{tok}={yacs_value(tokens[i + 1])}")
        i += 2
    return out


def yacs_value(text: str) -> str:
    """The value as yacs decodes it (a Python literal, else the string), written as YAML for the override."""
    try:
        value = ast.literal_eval(text) if len(text) <= 10_000 else text
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (str, int, float, bool, list)) or value is None:
        try:
            return json.dumps(value)  # JSON is YAML: strings stay strings, lists stay lists
        except (TypeError, ValueError):
            pass
    return json.dumps(text)


def _refuse(command: str, flags: dict, names, why: str) -> None:
    for name in names:
        if name in flags:
            raise UserError(f"reidplug {command}: {name}: {why}")


def _train(config: str, flags: dict, opts: list[str]) -> list[str]:
    from reidplug.cli import cli

    _refuse("train", flags, ("--num-trials", "--srch-algo", "--pbt"),
            "a FastTune option; search with: reidplug run --config-file FILE --num-trials N --srch-algo ALGO")
    native = {f"--{p.name.replace('_', '-')}" for p in cli.commands["train"].params}
    out = ["train", config]
    if flags.pop("--resume", False):
        out.append("--resume")
    for name in LAUNCH_FLAGS:
        if name in flags:
            if name not in native:
                raise UserError(f"reidplug train: {name} is not available in this version")
            out += [name, str(flags.pop(name))]
    return out + opts


def _eval(config: str, flags: dict, opts: list[str]) -> list[str]:
    _refuse("train --eval-only", flags, ("--resume",),
            "has no effect with --eval-only, which evaluates MODEL.WEIGHTS (FastReID ignores it too); drop it")
    _refuse("eval", flags, ("--num-trials", "--srch-algo", "--pbt"), "a FastTune option, not one of evaluation")
    if str(flags.pop("--num-gpus", "1")).strip() != "1" or any(n in flags for n in LAUNCH_FLAGS):
        raise UserError("reidplug eval: evaluation runs in one process; drop --num-gpus/--num-machines "
                        "(pick the device with MODEL.DEVICE)")
    return ["eval", config, *opts]


def _run(config: str, flags: dict, opts: list[str]) -> list[str]:
    _refuse("run", flags, ("--eval-only",), "not an option of a search; evaluate a checkpoint with reidplug eval")
    _refuse("run", flags, LAUNCH_FLAGS,
            "a search places trials itself; give each trial its GPUs with TUNE.RESOURCES_PER_TRIAL.GPU=N")
    out = ["run", config]
    if flags.pop("--resume", False):
        out.append("--resume")
    tune: dict[str, str] = {}
    if "--num-trials" in flags:
        trials = str(flags.pop("--num-trials"))
        if not re.fullmatch(r"\d+", trials):
            raise UserError(f"reidplug run: --num-trials: expected a positive integer, got {trials!r}")
        tune["TUNE.NUM_TRIALS"] = trials
    # Without --srch-algo the config's TUNE section decides (FastTune's own default is hyperopt).
    algo = flags.pop("--srch-algo", None)
    pbt = flags.pop("--pbt", False)
    if algo == "pbt":
        algo, pbt = "hyperopt", True
    if algo is None:
        pass
    elif algo in SEARCH_ALGOS:
        tune.update(SEARCH_ALGOS[algo])
    else:
        from reidplug.core.manager import registry

        if algo not in registry("searcher"):
            known = sorted({*SEARCH_ALGOS, "pbt", *registry("searcher").names()})
            raise UserError(f"reidplug run: --srch-algo: {algo!r} is not available; known: {', '.join(known)}")
        tune["TUNE.SEARCHER"] = algo
    if pbt:
        if tune.get("TUNE.SCHEDULER") == "bohb":
            raise UserError("reidplug run: --pbt: FastTune runs PBT only with --srch-algo hyperopt")
        tune["TUNE.SCHEDULER"] = "pbt"
    if (algo is not None or pbt) and not _has_space(config, opts):
        tune.update(FASTTUNE_SEARCH[tune.get("TUNE.SCHEDULER", "asha")])
    return out + [f"{k}={v}" for k, v in tune.items()] + opts


# FastTune keeps its search in tune_net.py, not in the config: batch size and instances per
# identity, ASHA (grace 2, reduction 3), BOHB's Hyperband (reduction 3, 4 concurrent models)
# or PBT (perturbing every 2 reports). A config without TUNE.SPACE gets that search.
_FASTTUNE_SPACE = ("{SOLVER.IMS_PER_BATCH: {choice: [64, 96, 128, 160, 224, 256]}, "
                   "DATALOADER.NUM_INSTANCE: {choice: [2, 4, 8, 16, 32]}}")
FASTTUNE_SEARCH = {
    "asha": {"TUNE.SPACE": _FASTTUNE_SPACE, "TUNE.ASHA.GRACE_PERIOD": "2", "TUNE.ASHA.REDUCTION_FACTOR": "3"},
    "bohb": {"TUNE.SPACE": _FASTTUNE_SPACE, "TUNE.BOHB.ETA": "3", "TUNE.MAX_CONCURRENT": "4"},
    "pbt": {"TUNE.SPACE": _FASTTUNE_SPACE, "TUNE.PBT.PERTURBATION_INTERVAL": "2"},
}


def _has_space(config: str, opts: list[str]) -> bool:
    """Whether the config (or an override) defines TUNE.SPACE; an unreadable file counts as yes,
    so that the native command reports the file's own problem."""
    from reidplug.core.config import load_dict
    from reidplug.core.errors import ConfigError

    if any(o.startswith("TUNE.SPACE") for o in opts):
        return True
    try:
        data, _ = load_dict(config)
    except ConfigError:
        return True
    tune = data.get("TUNE")
    return isinstance(tune, dict) and bool(tune.get("SPACE"))


# Options people bring from other Re-ID tools, and the config key that does the same here.
_EQUIVALENTS = {
    "--epochs": "SOLVER.MAX_EPOCH=N", "--max-epoch": "SOLVER.MAX_EPOCH=N", "--lr": "SOLVER.BASE_LR=X",
    "--batch-size": "SOLVER.IMS_PER_BATCH=N", "--output-dir": "OUTPUT_DIR=DIR", "--output": "OUTPUT_DIR=DIR",
    "--weights": "MODEL.WEIGHTS=FILE", "--device": "MODEL.DEVICE=cuda|cpu", "--seed": "SEED=N",
    "--opts": "KEY=VALUE after the config (or FastReID's KEY VALUE pairs after --config-file)",
}


def unknown_option_hint(name: str | None) -> str:
    """A pointer to the equivalent of an option click does not know, for the end of its one-line error."""
    if name in _EQUIVALENTS:
        return f"; here that is {_EQUIVALENTS[name]}"
    return "; config keys are set as KEY=VALUE, and FastReID's flags are listed in docs/fastreid.md"

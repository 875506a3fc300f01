"""Config files: YAML with `_BASE_` inheritance, dotted overrides and a typed schema.

Every key remembers the file (or the command line) it came from, so that an
error names the file and the key path.

FastReID's files are read as its yacs loader reads them: a string holding a
Python tuple or list literal (`NAMES: ("Market1501",)`) is that list. The literal
is parsed by `ast.literal_eval` (never evaluated) and only lists of plain scalars
are taken.
"""

from __future__ import annotations

import ast
import copy
import difflib
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from reidplug.core.errors import ConfigError
from reidplug.core import fastreid_legacy
from reidplug.core.fastreid_keys import check_implemented
from reidplug.core.schema import Config, TuneCfg

COMMAND_LINE = "<command line>"
BASE_KEY = "_BASE_"
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

# libyaml is several times faster where it is built in
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Sections in block style, short lists of scalars inline (as FastReID's files are written)."""


def _represent_list(dumper, value):
    flow = all(not isinstance(v, (dict, list)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


class Origins(dict):
    """Dotted key -> the file that set it; a key not set anywhere falls back to its parent's."""

    def __init__(self, *args, default: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.default = default

    def of(self, key: str) -> str | None:
        # A list item (SOLVER.STEPS[1]) came from wherever its list did.
        parts = re.sub(r"\[\d+\]", "", key).split(".")
        while parts:
            found = self.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.default


# ---------------------------------------------------------------- reading

_LITERAL_MAX = 10_000  # characters; a literal longer than any config list stays a string


def literal_list(text: str):
    """The list a tuple/list literal string spells (`("a", "b",)` -> ["a", "b"]), else None."""
    stripped = text.strip()
    if len(stripped) > _LITERAL_MAX or stripped[:1] not in "([" or stripped[-1:] not in ")]":
        return None
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return _plain_list(value) if isinstance(value, (list, tuple)) else None


def _plain_list(value):
    out = []
    for item in value:
        if isinstance(item, (list, tuple)):
            item = _plain_list(item)
            if item is None:
                return None
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            return None
        out.append(item)
    return out


def read_literals(data: Any) -> Any:
    """`data` with every tuple/list literal string replaced by its list, at any depth."""
    if isinstance(data, dict):
        return {k: read_literals(v) for k, v in data.items()}
    if isinstance(data, list):
        return [read_literals(v) for v in data]
    if isinstance(data, str):
        found = literal_list(data)
        return found if found is not None else data
    return data



def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc.__class__.__name__}", file=str(path)) from None
    try:
        return read_literals(yaml.load(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {where}{problem}", file=str(path)) from None


def load_dict(path: str | Path, _stack: tuple[Path, ...] = ()) -> tuple[dict, Origins]:
    """The merged mapping of a file and its `_BASE_` chain, with each key's origin."""
    path = Path(path).resolve() if _stack else Path(path)
    real = path.resolve()
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, not {type(data).__name__}", file=str(path))
    fastreid_legacy.upgrade(data)
    bases = data.pop(BASE_KEY, None)
    merged: dict = {}
    origins = Origins(default=str(path))
    if bases is not None:
        for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else [None]:
            if not isinstance(base, str) or not base:
                raise ConfigError("must be a path or a list of paths", file=str(path), key=BASE_KEY)
            base_path = (real.parent / os.path.expanduser(base)).resolve()
            if base_path in (*_stack, real):
                chain = " -> ".join(p.name for p in (*_stack, real, base_path))
                raise ConfigError(f"inheritance cycle: {chain}", file=str(path), key=BASE_KEY)
            if not base_path.is_file():
                raise ConfigError(f"base config {base!r} not found (looked at {base_path})", file=str(path), key=BASE_KEY)
            base_data, base_origins = load_dict(base_path, (*_stack, real))
            merge_into(merged, base_data)
            origins.update(base_origins)
    merge_into(merged, data)
    for key in flatten_keys(data):
        origins[key] = str(path)
    return merged, origins


def merge_into(dst: dict, src: dict) -> dict:
    """Deep-merge `src` into `dst`: mappings merge, anything else replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_into(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def flatten_keys(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(flatten_keys(value, dotted + "."))
    return keys


def parse_override(text: str) -> tuple[str, Any]:
    """`SOLVER.BASE_LR=0.001` -> ("SOLVER.BASE_LR", 0.001); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        hint = " (FastReID's KEY VALUE pairs work after --config-file FILE)" if not sep else ""
        raise ConfigError(f"override {text!r} is not KEY.PATH=VALUE{hint}", file=COMMAND_LINE)
    try:
        value = read_literals(yaml.load(raw, Loader=_Loader)) if raw.strip() else ""
    except yaml.YAMLError:
        value = read_literals(raw)
    return key, value


def set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"{part!r} is a value, not a section", key=key)
            node[part] = child
        node = child
    node[parts[-1]] = value


def get_dotted(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


# ---------------------------------------------------------------- schema


def _hint(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    if not close:
        close = [o for o in options if o.lower() == name.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


@attrs.define
class _Ctx:
    origins: Origins

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(reason, file=self.origins.of(key), key=key)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if attrs.has(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def convert(tp, value, key: str, ctx: _Ctx):
    """Check (and gently coerce) `value` against the annotation `tp`."""
    origin = typing.get_origin(tp)
    if attrs.has(tp):
        if isinstance(value, bool) and "ENABLED" in attrs.fields_dict(tp):
            value = {"ENABLED": value}  # SOLVER: {AMP: True} means AMP.ENABLED
        return structure(tp, value, key, ctx)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ctx.error(key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}{_hint(str(value), map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, key, ctx)
            except ConfigError:
                continue
        raise ctx.error(key, f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.error(key, f"expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (typing.Any,)
        return [convert(item, v, f"{key}[{i}]", ctx) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ctx.error(key, f"expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ctx.error(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(key, f"expected a string, got {value!r}")
        return value
    return value


def structure(cls, data, prefix: str, ctx: _Ctx):
    if not isinstance(data, dict):
        raise ctx.error(prefix or "<root>", f"expected a mapping, got {data!r}")
    fields = attrs.fields_dict(cls)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            # Plugins own their option sections under TUNE (TUNE.ASHA, TUNE.PBT, ...).
            if cls is TuneCfg and isinstance(value, dict) and str(name).isupper():
                extra[name] = value
                continue
            raise ctx.error(key, f"unknown key{_hint(str(name), fields)}")
        kwargs[name] = convert(hints[name], value, key, ctx)
    if extra:
        kwargs["PLUGINS"] = {**kwargs.get("PLUGINS", {}), **extra}
    return cls(**kwargs)


def unstructure(obj) -> Any:
    """The plain-data form of a config (or of any section of it)."""
    if attrs.has(type(obj)):
        out = {}
        for f in attrs.fields(type(obj)):
            value = getattr(obj, f.name)
            if type(obj) is TuneCfg and f.name == "PLUGINS":
                out.update(copy.deepcopy(value))
                continue
            out[f.name] = unstructure(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [unstructure(v) for v in obj]
    if isinstance(obj, dict):
        return {k: unstructure(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- checks


def check(cfg: Config, origins: Origins) -> None:
    """Rules that span keys or bound values; each error names one key."""
    ctx = _Ctx(origins)
    positive = [
        "SOLVER.BASE_LR", "SOLVER.MAX_EPOCH", "SOLVER.IMS_PER_BATCH", "DATALOADER.NUM_INSTANCE",
        "TEST.EVAL_PERIOD", "TEST.IMS_PER_BATCH", "TUNE.NUM_TRIALS", "TUNE.MAX_CONCURRENT", "TUNE.STEP_EPOCHS",
        "SOLVER.CHECKPOINT_PERIOD", "DATASETS.SYNTH.IDS", "DATASETS.SYNTH.CAMS", "SOLVER.MAX_CONSECUTIVE_NAN",
    ]
    for key in positive:
        if get_dotted(cfg, key) <= 0:
            raise ctx.error(key, f"must be positive, got {get_dotted(cfg, key)!r}")
    non_negative = [
        "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_NORM", "SOLVER.WEIGHT_DECAY_BIAS", "SOLVER.WARMUP_ITERS",
        "SOLVER.WARMUP_EPOCHS",
        "SOLVER.FREEZE_ITERS", "SOLVER.DELAY_EPOCHS", "DATALOADER.NUM_WORKERS", "TUNE.TIME_BUDGET_S",
        "TUNE.MAX_STEPS", "TUNE.MAX_FAILURES", "TUNE.CHECKPOINT_FREQ", "TUNE.KEEP_CHECKPOINTS",
        "MODEL.LOSSES.TRI.MARGIN", "TUNE.RESOURCES_PER_TRIAL.CPU", "TUNE.RESOURCES_PER_TRIAL.GPU",
    ]
    for key in non_negative:
        if get_dotted(cfg, key) < 0:
            raise ctx.error(key, f"must not be negative, got {get_dotted(cfg, key)!r}")
    for key in ("INPUT.SIZE_TRAIN", "INPUT.SIZE_TEST"):
        size = get_dotted(cfg, key)
        if len(size) != 2 or min(size) <= 0:
            raise ctx.error(key, f"must be [height, width] with positive values, got {size!r}")
    for key in ("INPUT.FLIP.PROB", "INPUT.REA.PROB", "INPUT.CJ.PROB", "INPUT.AUTOAUG.PROB"):
        if not 0.0 <= get_dotted(cfg, key) <= 1.0:
            raise ctx.error(key, f"must lie in [0, 1], got {get_dotted(cfg, key)!r}")
    # A negative epsilon is FastReID's adaptive smoothing (MODEL.LOSSES.CE.ALPHA).
    if cfg.MODEL.LOSSES.CE.EPSILON > 1.0:
        raise ctx.error("MODEL.LOSSES.CE.EPSILON", f"must be at most 1 (negative: adaptive), got {cfg.MODEL.LOSSES.CE.EPSILON!r}")
    if "Identity" in cfg.DATALOADER.SAMPLER_TRAIN and cfg.SOLVER.IMS_PER_BATCH % cfg.DATALOADER.NUM_INSTANCE:
        raise ctx.error(
            "SOLVER.IMS_PER_BATCH",
            f"{cfg.SOLVER.IMS_PER_BATCH} is not divisible by DATALOADER.NUM_INSTANCE={cfg.DATALOADER.NUM_INSTANCE}",
        )
    if cfg.SOLVER.IMS_PER_BATCH // max(cfg.DATALOADER.NUM_INSTANCE, 1) < 2 and "TripletLoss" in cfg.MODEL.LOSSES.NAME:
        raise ctx.error("SOLVER.IMS_PER_BATCH", "the triplet loss needs at least 2 identities per batch")
    if sorted(cfg.SOLVER.STEPS) != list(cfg.SOLVER.STEPS):
        raise ctx.error("SOLVER.STEPS", f"milestones must increase, got {cfg.SOLVER.STEPS!r}")
    if not cfg.DATASETS.NAMES:
        raise ctx.error("DATASETS.NAMES", "name at least one training dataset")


# ---------------------------------------------------------------- entry points


def build(data: dict, origins: Origins | None = None) -> Config:
    """A checked Config from a plain mapping."""
    origins = origins if origins is not None else Origins(default=None)
    ctx = _Ctx(origins)
    cfg = structure(Config, data, "", ctx)
    check(cfg, origins)
    check_implemented(cfg, origins)
    cfg.origins = origins
    cfg.source_file = origins.default
    return cfg


def load_config(path: str | Path | dict | Config | None = None, overrides=()) -> Config:
    """Load a config file (or mapping), apply `KEY=VALUE` overrides and check it."""
    if isinstance(path, Config):
        data, origins = unstructure(path), getattr(path, "origins", Origins())
    elif isinstance(path, dict):
        data, origins = copy.deepcopy(path), Origins(default="<dict>")
        for key in flatten_keys(data):
            origins[key] = "<dict>"
    elif path is None:
        data, origins = {}, Origins(default="<defaults>")
    else:
        data, origins = load_dict(path)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        key, value = fastreid_legacy.upgrade_override(key, value)
        _check_override_key(key)
        set_dotted(data, key, value)
        _mark(origins, key, COMMAND_LINE)
    return build(data, origins)


def _mark(origins: Origins, key: str, source: str) -> None:
    """`key` and everything under it now come from `source` (a section set whole replaces the file's keys)."""
    for inner in [k for k in origins if k.startswith(key + ".")]:
        del origins[inner]
    origins[key] = source


def _check_override_key(key: str) -> None:
    """Overrides must name schema keys (or a plugin section under TUNE)."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = attrs.fields_dict(cls)
        if part not in fields:
            if cls is TuneCfg and part.isupper() and i < len(parts) - 1:
                return
            path = ".".join(parts[: i + 1])
            raise ConfigError(f"unknown key{_hint(part, fields)}", file=COMMAND_LINE, key=path)
        tp = typing.get_type_hints(cls)[part]
        if not attrs.has(tp):
            return
        cls = tp


def with_params(cfg: Config, params: dict[str, Any], *, source: str = "<trial>") -> Config:
    """A copy of `cfg` with dotted `params` applied, checked like a file would be."""
    data = unstructure(cfg)
    origins = Origins(getattr(cfg, "origins", {}), default=getattr(cfg, "source_file", None))
    for key, value in params.items():
        set_dotted(data, key, value)
        _mark(origins, key, source)
    return build(data, origins)


def to_yaml(cfg: Config | dict) -> str:
    data = unstructure(cfg) if not isinstance(cfg, dict) else cfg
    flat = _flat_yaml(data)
    if flat is not None:
        return flat
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "~"}  # as PyYAML resolves them


def _plain(text) -> bool:
    """A string YAML reads back as that same string without quotes."""
    return isinstance(text, str) and _PLAIN.match(text) is not None and text.lower() not in _YAML_WORDS


def _flat_yaml(data: dict) -> str | None:
    """A flat mapping of scalars, written without PyYAML's representers.

    Every trial writes its parameters; for a cheap trainable the general dumper is
    a noticeable part of the per-trial cost. Anything that is not a plain key with
    an int, float, bool, None or identifier-like string value goes through the general dumper.
    """
    lines = []
    for key, value in data.items():
        if not _plain(key):
            return None
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            text = _yaml_float(value)
        elif _plain(value):
            text = value
        else:
            return None
        lines.append(f"{key}: {text}\n")
    return "".join(lines) if lines else None



def _yaml_float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:  # YAML 1.1 reads 1e-05 as a string
        mantissa += ".0"
    if e and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + (e + exponent if e else "")


def schema_keys(cls=Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of the schema, dotted, with its type annotation."""
    out: dict[str, Any] = {}
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}{name}"
        if attrs.has(tp):
            out.update(schema_keys(tp, key + "."))
        else:
            out[key] = tp
    return out


def leaf_type(key: str):
    """The annotation of a dotted schema key, or None when the key is not in the schema."""
    return schema_keys().get(key)

"""The API reference page (docs/api.md), generated from the docstrings.

    python -m reidplug.core.apidoc                       # print the page
    python -m reidplug.core.apidoc --write docs/api.md   # (re)write it; `make api-docs` does this

The output depends only on the source: members in definition order, signatures
as written, no memory addresses, so a test can regenerate the page and compare.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from reidplug.core.registry import resolve

# (section title, intro, [objects as "module:QualName"]). The public classes are taken from where
# `reidplug` exposes them, so the page follows them when their modules move.
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("Embedding", "Running a search from Python.", ["reidplug:Tuner", "reidplug:Experiment"]),
    ("Trials", "What the experiment, schedulers and reporters pass around.",
     ["reidplug.core.trial:Trial", "reidplug.core.trial:TrialStatus", "reidplug.core.trial:Decision"]),
    ("Trainables", "What one trial runs.", ["reidplug:Trainable", "reidplug.core.trainable:TrialContext"]),
    ("Searchers", "Which configuration to try next.", ["reidplug:Searcher"]),
    ("Schedulers", "Which trials run, pause, stop or exploit.", ["reidplug:Scheduler"]),
    ("Reporters", "Observers of the lifecycle hooks.", ["reidplug.core.reporter:Reporter"]),
    ("Executors", "Where trial segments run.",
     ["reidplug.core.executor:Executor", "reidplug.core.executor:LaunchSpec", "reidplug.core.executor:ResultEvent",
      "reidplug.core.executor:SavedEvent", "reidplug.core.executor:ErrorEvent"]),
    ("Search spaces", "The domains of TUNE.SPACE, as searchers see them in `self.space`.",
     ["reidplug.core.space:SearchSpace", "reidplug.core.space:Domain", "reidplug.core.space:Choice",
      "reidplug.core.space:Uniform", "reidplug.core.space:LogUniform", "reidplug.core.space:QUniform",
      "reidplug.core.space:QLogUniform", "reidplug.core.space:RandInt"]),
]

# Underscore methods that are part of a class's contract: subclasses implement them.
CONTRACT = {"Searcher": ("_suggest", "_observe_point")}

HOOKSPECS = "reidplug.core.hookspecs"
HEADER = """\
# API reference

Generated from the docstrings by `python -m reidplug.core.apidoc --write docs/api.md`
(`make api-docs`); edit the docstrings, not this page. A test fails when the page is
out of date. How to write plugins is in [plugins.md](plugins.md).
"""


def _doc(obj: Any) -> str:
    doc = obj.__doc__ if isinstance(obj, (type, property)) or callable(obj) else None
    return inspect.cleandoc(doc) if doc else ""


class _Written:
    """An annotation shown as written in the source (postponed annotations are strings)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"

    def written(annotation):
        return _Written(annotation) if isinstance(annotation, str) else annotation

    sig = sig.replace(
        parameters=[p.replace(annotation=written(p.annotation)) for p in sig.parameters.values()],
        return_annotation=written(sig.return_annotation),
    )
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(sig))


def _class_signature(cls: type) -> str:
    if issubclass(cls, enum.Enum):
        return ""
    if not any("__init__" in c.__dict__ for c in _own_classes(cls)) and not dataclasses.is_dataclass(cls):
        # inherited constructor: shown with the base class
        return ""
    return _signature(cls).removesuffix(" -> None")


def _attribute_comments(cls: type) -> dict[str, str]:
    """`#: text` comments written just above class-level assignments, by attribute name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    body = ast.parse(source).body[0].body
    out = {}
    for node in body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        comment = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#:"):
            comment.insert(0, lines[i].strip()[2:].strip())
            i -= 1
        for name in targets:
            if comment:
                out[name] = " ".join(comment)
    return out


def _own_classes(cls: type) -> list[type]:
    """`cls` and its private bases (`_Bounded`): what the page shows as the class's own members."""
    out = [cls]
    for base in cls.__mro__[1:]:
        if not base.__name__.startswith("_"):
            break
        out.append(base)
    return out


def _public_base_classes(cls: type) -> list[type]:
    base = next((b for b in cls.__mro__[1:] if not b.__name__.startswith("_")), object)
    return [base] if base is not object and base.__module__.startswith("reidplug") else []


def _public_bases(cls: type) -> list[str]:
    return [b.__name__ for b in _public_base_classes(cls)]


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined in the class (or a private base), in definition order."""
    keep = CONTRACT.get(cls.__name__, ())
    out, seen = [], set()
    for owner in _own_classes(cls):
        for name, value in owner.__dict__.items():
            if name in seen or (name.startswith("_") and name not in keep):
                continue
            if isinstance(value, classmethod):
                value = getattr(cls, name)  # bound: the signature without `cls`
            elif isinstance(value, staticmethod):
                value = value.__func__
            if not (isinstance(value, property) or inspect.isfunction(value) or inspect.ismethod(value)):
                continue
            seen.add(name)
            # An undocumented override implements a method documented on a public base: shown there.
            if not _doc(value) and any(hasattr(base, name) for base in _public_base_classes(cls)):
                continue
            out.append((name, value))
    return out


def _render_class(path: str, cls: type) -> list[str]:
    module, _, _ = path.partition(":")
    where = f"`{module}.{cls.__name__}`" if module == "reidplug" else f"`{cls.__module__}.{cls.__qualname__}`"
    bases = _public_bases(cls)
    out = [f"### {cls.__name__}", ""]
    line = f"{where}"
    if module == "reidplug":
        line += f", defined in `{cls.__module__}`"
    if bases:
        line += f"; a subclass of {', '.join(bases)}"
    out += [line, ""]
    sig = _class_signature(cls)
    if sig:
        out += ["```python", f"{cls.__name__}{sig}", "```", ""]
    doc = _doc(cls)
    if doc and not (dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")):
        out += [doc, ""]
    if issubclass(cls, enum.Enum):
        out += ["Members: " + ", ".join(f"`{m.name}` (`{m.value!r}`)" for m in cls), ""]
    for base in _own_classes(cls)[1:]:
        if _doc(base):
            out += [_doc(base), ""]
    comments = _attribute_comments(cls)
    attrs = [(n, c) for n, c in comments.items() if not n.startswith("_")]
    if attrs:
        out += ["Class attributes:", ""]
        out += [f"- `{name}`: {text}" for name, text in attrs]
        out.append("")
    for name, member in _members(cls):
        if isinstance(member, property):
            out += [f"#### `{cls.__name__}.{name}` (property)", ""]
        else:
            out += [f"#### `{cls.__name__}.{name}{_signature(member)}`", ""]
        doc = _doc(member)
        if doc:
            out += [doc, ""]
    return out


def _render_hooks() -> list[str]:
    module = sys.modules.get(HOOKSPECS) or __import__(HOOKSPECS, fromlist=["_"])
    marker = f"{module.PROJECT}_spec"
    out = ["## Hooks", "", f"Hook specifications (`{HOOKSPECS}`). Implement them in a plugin module with "
           "`@reidplug.hookimpl`, keyword arguments named as here.", ""]
    if module.__doc__:
        out += [inspect.cleandoc(module.__doc__), ""]
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and hasattr(obj, marker):
            out += [f"### `{name}{_signature(obj)}`", ""]
            if obj.__doc__:
                out += [inspect.cleandoc(obj.__doc__), ""]
    return out


def render() -> str:
    """The whole page, as markdown."""
    out = [HEADER]
    contents = [f"- [{title}](#{title.lower().replace(' ', '-')})" for title, _, _ in SECTIONS] + ["- [Hooks](#hooks)"]
    out += ["\n".join(contents), ""]
    for title, intro, paths in SECTIONS:
        out += [f"## {title}", "", intro, ""]
        for path in paths:
            out += _render_class(path, resolve(path))
    out += _render_hooks()
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reidplug.core.apidoc", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="PATH", help="write the page to PATH instead of printing it")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":  # pragma: no cover
    main()

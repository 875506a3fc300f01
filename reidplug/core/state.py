"""Searcher and scheduler state as data: what the journal stores, and nothing it could run.

A `state_dict()` is encoded as JSON with a few tagged forms, so that loading it
builds only plain values:

    None, bool, int, float (NaN and infinities too), str, list, dict   as themselves
    tuple, set, frozenset, bytes, dicts with other keys              tagged ({"$t": [...]}, ...)
    numpy arrays (not of dtype object), numpy scalars, array.array   dtype or typecode + raw bytes

A component whose state holds other objects (a library's optimizer that has no
plain form) names their classes in `STATE_TYPES`, as "module:QualName" strings::

    class MySearcher(Searcher):
        STATE_TYPES = ("mylib.optim:Optimizer", "mylib.space:Real")

Such an object is pickled inside the state, and unpickled with an unpickler
that admits exactly those classes and a few harmless builtins; anything else
in it is refused with an error naming the class. Journals of older versions
hold whole pickled states: they load through the same restricted unpickler.
"""

from __future__ import annotations

import array
import base64
import io
import json
import pickle
from typing import Any, Iterable

MAGIC = b"reidplug-state/1\n"

# What a restricted unpickle admits besides a component's own STATE_TYPES: containers,
# numpy arrays and random generators, as older journals (pickles) hold them.
SAFE_GLOBALS = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("builtins", "slice"), ("builtins", "range"), ("builtins", "object"),
    ("copyreg", "_reconstructor"), ("collections", "OrderedDict"), ("collections", "deque"),
    ("array", "array"), ("array", "_array_reconstructor"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
})
# A dtype name may not be "O" (object arrays would unpickle their items unchecked).
_DTYPE_KINDS = set("biufcSUVMm?")


class StateError(ValueError):
    """A state that cannot be stored or loaded as data."""


def declared_types(*components: Any) -> frozenset[tuple[str, str]]:
    """The (module, qualname) pairs that `components` (instances or classes) declare in STATE_TYPES."""
    out = set()
    for comp in components:
        cls = comp if isinstance(comp, type) else type(comp)
        for ref in getattr(cls, "STATE_TYPES", ()) or ():
            module, sep, name = str(ref).partition(":")
            if not sep or not module or not name:
                raise StateError(f"{cls.__qualname__}.STATE_TYPES: {ref!r} is not 'module:QualName'")
            out.add((module, name))
    return frozenset(out)


# ------------------------------------------------------------------ encoding


def dumps(state: Any, allowed: Iterable[tuple[str, str]] = ()) -> bytes:
    """`state` as bytes; objects outside the plain forms must be of a class in `allowed`."""
    allowed = frozenset(allowed)
    return MAGIC + json.dumps(_enc(state, allowed), separators=(",", ":"), allow_nan=True).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Values JSON writes as they are: containers of only these need no walk (the state is
# encoded after every result, so the common flat lists and dicts take the fast path).
_SCALARS = frozenset({type(None), bool, int, float, str})


def _enc(x: Any, allowed: frozenset) -> Any:
    t = type(x)
    if t in _SCALARS:
        return x
    if t is list:
        if all(type(v) in _SCALARS for v in x):
            return x
        return [_enc(v, allowed) for v in x]
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in x):
            if all(type(v) in _SCALARS for v in x.values()):
                return x
            return {k: _enc(v, allowed) for k, v in x.items()}
        if all(type(k) in _SCALARS and type(v) in _SCALARS for k, v in x.items()):
            return {"$d": [[k, v] for k, v in x.items()]}
        return {"$d": [[_enc(k, allowed), _enc(v, allowed)] for k, v in x.items()]}
    if t is tuple:
        if all(type(v) in _SCALARS for v in x):
            return {"$t": list(x)}
        return {"$t": [_enc(v, allowed) for v in x]}
    if t is set or t is frozenset:
        items = [_enc(v, allowed) for v in x]
        return {"$s" if t is set else "$fs": items}
    if t is bytes or t is bytearray:
        return {"$b": _b64(bytes(x))}
    if t is array.array:
        return {"$a": [x.typecode, _b64(x.tobytes())]}
    module = getattr(t, "__module__", "") or ""
    if module == "numpy" or module.startswith("numpy."):
        import numpy as np

        if isinstance(x, np.ndarray) and t is np.ndarray:
            if x.dtype.kind not in _DTYPE_KINDS or x.dtype.fields is not None:
                raise StateError(f"a numpy array of dtype {x.dtype} is not plain data")
            return {"$nd": [x.dtype.str, list(x.shape), _b64(np.ascontiguousarray(x).tobytes())]}
        if isinstance(x, np.generic) and x.dtype.kind in _DTYPE_KINDS:
            return {"$ns": [x.dtype.str, _b64(x.tobytes())]}
    # Subclasses of the plain types (str enums, named tuples, numpy float64) keep their value.
    if isinstance(x, bool):
        return bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return str(x)
    if (module, t.__qualname__) in allowed:
        return {"$p": _b64(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL))}
    if isinstance(x, tuple):
        return {"$t": [_enc(v, allowed) for v in x]}
    if isinstance(x, dict):
        return _enc(dict(x), allowed)
    if isinstance(x, list):
        return [_enc(v, allowed) for v in x]
    raise StateError(
        f"{module}.{t.__qualname__} is not plain data; store its data instead, or declare "
        f"'{module}:{t.__qualname__}' in the component's STATE_TYPES"
    )


# ------------------------------------------------------------------ decoding


def loads(blob: bytes, allowed: Iterable[tuple[str, str]] = ()) -> Any:
    """The state `dumps` wrote (or an older journal's pickle), built without running any code."""
    allowed = frozenset(allowed)
    blob = bytes(blob)
    if blob.startswith(MAGIC):
        try:
            data = json.loads(blob[len(MAGIC):])
        except ValueError as exc:
            raise StateError(f"unreadable state ({exc})") from None
        return _dec(data, allowed)
    return restricted_loads(blob, allowed)


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise StateError("malformed state: bytes expected")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _dec(x: Any, allowed: frozenset) -> Any:
    if isinstance(x, list):
        return [_dec(v, allowed) for v in x]
    if not isinstance(x, dict):
        return x
    if len(x) == 1:
        (tag, v), = x.items()
        if tag.startswith("$"):
            return _dec_tagged(tag, v, allowed)
    return {k: _dec(v, allowed) for k, v in x.items()}


def _dec_tagged(tag: str, v: Any, allowed: frozenset) -> Any:
    if tag == "$t":
        return tuple(_dec(i, allowed) for i in v)
    if tag == "$s":
        return {_dec(i, allowed) for i in v}
    if tag == "$fs":
        return frozenset(_dec(i, allowed) for i in v)
    if tag == "$d":
        return {_dec(k, allowed): _dec(i, allowed) for k, i in v}
    if tag == "$b":
        return _unb64(v)
    if tag == "$a":
        code, data = v
        if not isinstance(code, str) or code not in array.typecodes:
            raise StateError(f"malformed state: array typecode {code!r}")
        out = array.array(code)
        out.frombytes(_unb64(data))
        return out
    if tag in ("$nd", "$ns"):
        import numpy as np

        dtype = np.dtype(_plain_dtype(v[0]))
        if tag == "$ns":
            return np.frombuffer(_unb64(v[1]), dtype=dtype)[0]
        shape = tuple(int(n) for n in v[1])
        return np.frombuffer(_unb64(v[2]), dtype=dtype).reshape(shape).copy()
    if tag == "$p":
        return restricted_loads(_unb64(v), allowed)
    raise StateError(f"malformed state: unknown tag {tag!r}")


def _plain_dtype(name: Any) -> str:
    if not isinstance(name, str) or len(name) > 8 or name.lstrip("<>|=")[:1] not in _DTYPE_KINDS:
        raise StateError(f"malformed state: dtype {name!r}")
    return name


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: frozenset):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS or (module, name) in self.allowed:
            if (module, name) == ("numpy", "dtype"):
                import numpy as np

                def dtype(spec, *args):
                    return np.dtype(_plain_dtype(spec) if isinstance(spec, str) else spec, *args)

                return dtype
            return super().find_class(module, name)
        raise StateError(f"refused to load {module}.{name} from the journal: it is not a declared state type "
                         "(a component lists the classes its state may hold in STATE_TYPES)")


def restricted_loads(blob: bytes, allowed: Iterable[tuple[str, str]] = ()) -> Any:
    """Unpickle `blob`, admitting only SAFE_GLOBALS and `allowed` (module, name) pairs."""
    try:
        return _RestrictedUnpickler(io.BytesIO(blob), frozenset(allowed)).load()
    except StateError:
        raise
    except Exception as exc:  # a truncated or foreign blob: data that is not a state
        raise StateError(f"unreadable state ({type(exc).__name__}: {exc})") from None

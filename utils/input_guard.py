"""Every check's "inputs unchanged" guard: a learner function that edits an argument in place fails
with a message that says so, instead of passing, or spoiling a later table of the notebook, or
crashing the check with an unrelated message.

`utils.checks.check` hands each learner function it is given to `guarded(fn)`. The guarded
function copies what can be copied of each argument before every call (tensors, numpy arrays,
lists, tuples, dicts, sets, dataclasses and named tuples of those, a module's parameters and
buffers) and compares after the call. It keeps the learner function's globals, name and signature,
so checks that look up the learner's other functions through `fn.__globals__` still work.

An exercise whose job is to change an argument (a hook that edits its activation) names that
argument in `check(..., mutates=("name",))`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from typing import Any, Callable

import torch

_MAX_ITEMS = 10_000  # containers longer than this are compared by length only
_MAX_DEPTH = 4
_MAX_ELEMENTS = 50_000_000  # tensors larger than this are not copied


class InputChanged(AssertionError):
    """A learner function changed one of its arguments in place."""


def _copy(value: Any, depth: int = 0) -> Any:
    """A snapshot of `value` that a later `_changed(value, snapshot)` compares with; None where
    nothing can be compared."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone() if value.numel() <= _MAX_ELEMENTS and value.layout == torch.strided else None
    if type(value).__module__ == "numpy" and hasattr(value, "copy") and hasattr(value, "shape"):
        return value.copy()
    if isinstance(value, torch.nn.Module):
        state = list(value.named_parameters()) + list(value.named_buffers())
        if sum(t.numel() for _, t in state) > _MAX_ELEMENTS:
            return None
        return {name: t.detach().clone() for name, t in state}
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, (list, tuple)):
        items = list(value)[:_MAX_ITEMS] if len(value) <= _MAX_ITEMS else []
        fields = [_copy(v, depth + 1) for v in items]
        return ("seq", len(value), [id(v) for v in items] if isinstance(value, list) else None, fields)
    if isinstance(value, dict):
        if len(value) > _MAX_ITEMS:
            return ("dict", len(value), None, None)
        return ("dict", len(value), {k: id(v) for k, v in value.items()}, {k: _copy(v, depth + 1) for k, v in value.items()})
    if isinstance(value, (set, frozenset)):
        return ("set", set(value)) if len(value) <= _MAX_ITEMS else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ("fields", {f.name: (id(getattr(value, f.name, None)), _copy(getattr(value, f.name, None), depth + 1))
                           for f in dataclasses.fields(value)})
    return None


def _tensors_differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return True
    if a.is_floating_point() or a.is_complex():
        return not bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return not torch.equal(a, b)


def _changed(value: Any, snapshot: Any) -> str | None:
    """How `value` differs from its `snapshot` ("" for the whole value, ".labels", "[2]", ...), or None."""
    if snapshot is None:
        return None
    if isinstance(value, torch.Tensor):
        return "" if _tensors_differ(value.detach(), snapshot) else None
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        import numpy as np

        return "" if value.shape != snapshot.shape or not np.array_equal(value, snapshot, equal_nan=value.dtype.kind in "fc") else None
    if isinstance(value, torch.nn.Module):
        now = dict(value.named_parameters()) | dict(value.named_buffers())
        for name, before in snapshot.items():
            if name not in now or _tensors_differ(now[name].detach(), before):
                return f".{name}"
        return None
    if isinstance(snapshot, tuple) and snapshot[0] == "seq":
        _, length, ids, fields = snapshot
        if len(value) != length:
            return f" (its length went from {length} to {len(value)})"
        for i, (item, before) in enumerate(zip(list(value), fields)):
            if ids is not None and id(item) != ids[i]:
                return f"[{i}]"
            where = _changed(item, before)
            if where is not None:
                return f"[{i}]{where}"
        return None
    if isinstance(snapshot, tuple) and snapshot[0] == "dict":
        _, length, ids, fields = snapshot
        if len(value) != length or (ids is not None and set(value) != set(ids)):
            return " (its keys changed)"
        for key, before in (fields or {}).items():
            if id(value[key]) != ids[key]:
                return f"[{key!r}]"
            where = _changed(value[key], before)
            if where is not None:
                return f"[{key!r}]{where}"
        return None
    if isinstance(snapshot, tuple) and snapshot[0] == "set":
        return "" if set(value) != snapshot[1] else None
    if isinstance(snapshot, tuple) and snapshot[0] == "fields":
        for name, (ident, before) in snapshot[1].items():
            now = getattr(value, name, None)
            if id(now) != ident:
                return f".{name}"
            where = _changed(now, before)
            if where is not None:
                return f".{name}{where}"
        return None
    return None


def guarded(fn: Callable, mutates: tuple[str, ...] = (), on_change: Callable[[str], None] | None = None) -> Callable:
    """`fn`, failing with InputChanged when a call changes an argument in place (except those named
    in `mutates`); or, given `on_change`, handing it the message and returning the result as usual."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    # `call` runs with the learner's globals (below): everything of ours it uses comes through its closure.
    copy, changed, error, report = _copy, _changed, InputChanged, on_change

    def call(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return fn(*args, **kwargs)  # let the learner's own function raise its TypeError
        watched = [(name, value, copy(value)) for name, value in bound.arguments.items() if name not in mutates]
        result = fn(*args, **kwargs)
        for name, value, snapshot in watched:
            where = changed(value, snapshot)
            if where is not None:
                what = f"`{name}`{where}" if where.startswith(" ") else f"`{name}{where}`"
                if where == "" and isinstance(value, torch.Tensor) and value.numel() <= 16:
                    what += f" (to {value.tolist()})"
                message = (
                    f"{fn.__name__} changed its argument {what} in place. The check, and the notebook's "
                    f"later cells, pass it on to other code that expects it unchanged: work on a copy "
                    f"(x.clone(), list(xs), a new dict) or use an out-of-place operation (x - y, not x -= y or x.abs_())."
                )
                if report is None:
                    raise error(message)
                report(message)
                break
        return result

    # The guarded function runs with the learner's globals, so learner_function(fn, name) still finds
    # the learner's other functions; its closure carries `fn`.
    wrapper = types.FunctionType(call.__code__, fn.__globals__, fn.__name__, None, call.__closure__)
    functools.update_wrapper(wrapper, fn)
    wrapper.__guarded__ = True
    return wrapper

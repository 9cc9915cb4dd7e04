"""The checks framework used by every chapter's `tests.py`.

A chapter check is a function decorated with `@check`:

    @check
    def test_sparse_tensor(SparseTensor):
        result = SparseTensor.from_dense(x)
        assert_tensor(result.dense, x, "from_dense(x).dense")

The decorator gives every check the same behaviour:
- on success it prints one line, "✅ test_sparse_tensor passed";
- a problem found by the check raises `CheckFailed` with a one-line message
  ("test_sparse_tensor failed: ..."), shown in Jupyter without a traceback;
- a `NotImplementedError` from the learner's code becomes "not implemented yet";
- any other exception from the learner's code becomes "your function raised X: message",
  pointing at the learner's own line rather than at our code;
- every outcome is appended as a JSON line to the file named by $COURSE_CHECK_LOG (the grader
  sets it; when it is unset nothing is written).

Inside a check, `fail`, `expect` and `assert_tensor` raise `CheckFailed`; give them `mistakes`
(see `Mistake`) to turn a recognised wrong answer into a hint.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import torch

from utils.course import REPO_ROOT, SOLUTIONS_DIR, UTILS_DIR, is_chapter_checks_file

RECORD_ENV = "COURSE_CHECK_LOG"

PASSED, FAILED, NOT_IMPLEMENTED = "passed", "failed", "not implemented"


class CheckFailed(AssertionError):
    """A check found a problem. The message is a single line written for the learner."""

    def __init__(self, message: str):
        # One line keeps the message intact in CSV cells and in nbmake's one-line failure summary.
        super().__init__(" ".join(str(message).split()))


# ---------------------------------------------------------------------------------------------
# Named mistakes


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: `test(actual)` recognises it and `hint` explains it."""

    test: Callable[[Any], bool]
    hint: str

    @classmethod
    def looks_like(cls, wrong: Any, hint: str) -> "Mistake":
        """Recognise an answer equal to `wrong`, the output of a known wrong variant."""
        return cls(lambda actual: _same(actual, wrong), hint)


def _same(actual: Any, wrong: Any) -> bool:
    if isinstance(wrong, torch.Tensor):
        return (
            isinstance(actual, torch.Tensor)
            and actual.shape == wrong.shape
            and torch.allclose(actual.detach().cpu().double(), wrong.detach().cpu().double())
        )
    return actual == wrong


def hint_for(actual: Any, mistakes: Iterable[Mistake]) -> str | None:
    """The hint of the first mistake that recognises `actual` (a test that crashes counts as no)."""
    for mistake in mistakes:
        try:
            if mistake.test(actual):
                return mistake.hint
        except Exception:
            continue
    return None


def fail(message: str, actual: Any = None, mistakes: Iterable[Mistake] = ()) -> NoReturn:
    """Raise CheckFailed, adding the hint of the first mistake that matches `actual`."""
    hint = hint_for(actual, mistakes)
    raise CheckFailed(f"{message} Hint: {hint}" if hint else message)


def expect(condition: bool, message: str, actual: Any = None, mistakes: Iterable[Mistake] = ()) -> None:
    if not condition:
        fail(message, actual, mistakes)


# ---------------------------------------------------------------------------------------------
# Tensor comparison

# The defaults of torch.testing.assert_close, per dtype.
_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


def assert_tensor(
    actual: Any,
    expected: torch.Tensor,
    name: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
    check_device: bool = True,
    mistakes: Iterable[Mistake] = (),
) -> None:
    """Compare `actual` with `expected`: type, shape, dtype, device, then values.

    `name` says what is compared, e.g. "from_dense(x).dense"; it starts every message.
    """
    mistakes = tuple(mistakes)

    def problem(message: str) -> NoReturn:
        fail(f"{name} {message}.", actual, mistakes)

    if not isinstance(actual, torch.Tensor):
        problem(f"should be a torch.Tensor, but is {_describe(actual)}")
    if actual.shape != expected.shape:
        problem(f"has shape {tuple(actual.shape)} but should have shape {tuple(expected.shape)}")
    if check_dtype and actual.dtype != expected.dtype:
        problem(f"has dtype {actual.dtype} but should have dtype {expected.dtype}")
    if check_device and actual.device != expected.device:
        problem(f"is on device {actual.device} but should be on {expected.device}")
    mismatch = _first_mismatch(actual, expected, rtol, atol)
    if mismatch is not None:
        problem(mismatch)


def _first_mismatch(actual: torch.Tensor, expected: torch.Tensor, rtol, atol) -> str | None:
    got = actual.detach().cpu().to(expected.dtype)
    want = expected.detach().cpu()
    if want.is_floating_point() or want.is_complex():
        default_rtol, default_atol = _TOLERANCES.get(want.dtype, (1e-5, 1e-8))
        close = torch.isclose(
            got,
            want,
            rtol=default_rtol if rtol is None else rtol,
            atol=default_atol if atol is None else atol,
            equal_nan=True,
        )
    else:
        close = got == want
    if bool(close.all()):
        return None
    wrong = (~close).nonzero()
    where = tuple(wrong[0].tolist())
    return (
        f"has wrong values: {len(wrong)} of {close.numel()} elements differ, first at index "
        f"{where} (got {got[where].item():.6g}, expected {want[where].item():.6g})"
    )


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------------
# Finding the learner's line in a traceback

_LIBRARY_DIRS = {
    Path(p).resolve()
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
}
_OUR_DIRS = (UTILS_DIR, SOLUTIONS_DIR)
_RAISE_STUB = re.compile(r"\s*raise\s+NotImplementedError\b")


def _is_learner_file(filename: str) -> bool:
    """Learner code is anything that is not ours (utils/, solutions/, chapter tests.py) and not
    installed (stdlib, site-packages). Notebook cells live in temporary files, so they count."""
    if filename.startswith("<frozen"):
        return False
    path = Path(filename).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return False
    if any(path.is_relative_to(d) for d in (*_OUR_DIRS, *_LIBRARY_DIRS)):
        return False
    return not is_chapter_checks_file(path)


def _learner_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost traceback frame that belongs to the learner's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    learner = [f for f in frames if _is_learner_file(f.filename)]
    return learner[-1] if learner else None


def _where(frame: traceback.FrameSummary) -> str:
    """'in from_dense, Cell In[4], line 12: `code`' (a notebook cell) or '..., file.py, line 12'."""
    place = _notebook_cell_name(frame.filename) or _short_path(frame.filename)
    code = (frame.line or "").strip()
    text = f"in {frame.name}, {place}, line {frame.lineno}"
    return f"{text}: `{code}`" if code else text


def _notebook_cell_name(filename: str) -> str | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    label = shell.compile.format_code_name(filename) if shell is not None else None
    return " ".join(label) if label else None


def _short_path(filename: str) -> str:
    path = Path(filename).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _qualname(exc: BaseException) -> str:
    """Qualified name of the function that raised (e.g. SparseTensor.from_dense)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_qualname if tb is not None else "your function"


def _is_stub(exc: NotImplementedError) -> bool:
    """Raised by a `raise NotImplementedError` line in the learner's code (not by a library)."""
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return _is_learner_file(last.filename) and bool(_RAISE_STUB.match(last.line or ""))


def _explain_exception(check_name: str, exc: Exception) -> tuple[str, str]:
    """Turn an unexpected exception into (status, one-line message)."""
    frame = _learner_frame(exc)
    if isinstance(exc, NotImplementedError) and _is_stub(exc):
        return NOT_IMPLEMENTED, (
            f"{check_name}: not implemented yet ({_qualname(exc)} still raises "
            f"NotImplementedError): replace the `raise NotImplementedError(...)` line with your code."
        )
    error = f"{type(exc).__name__}: {exc}"
    if frame is not None:
        return FAILED, f"{check_name} failed: your function raised {error} ({_where(frame)})"
    return FAILED, (
        f"{check_name} failed: the check raised {error}. Your function probably returned "
        "something of an unexpected type or shape."
    )


# ---------------------------------------------------------------------------------------------
# The decorator and the record the grader reads


def check(fn: Callable[..., Any]) -> Callable[..., None]:
    """Give a chapter check the uniform pass line, failure messages and grading record."""
    check_name = fn.__name__
    exercise = check_name.removeprefix("test_")

    @functools.wraps(fn)
    def run_check(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except CheckFailed as exc:
            message = f"{check_name} failed: {exc}"
            _record(exercise, FAILED, message)
            raise CheckFailed(message) from exc
        except Exception as exc:
            status, message = _explain_exception(check_name, exc)
            _record(exercise, status, message)
            raise CheckFailed(message) from exc
        _record(exercise, PASSED, f"{check_name} passed")
        print(f"✅ {check_name} passed")

    return run_check


def _record(exercise: str, status: str, message: str) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    line = {"exercise": exercise, "passed": status == PASSED, "status": status, "message": message}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line, ensure_ascii=False) + "\n")


def read_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """The last recorded outcome of each exercise in a check log (re-runs overwrite)."""
    records: dict[str, dict[str, Any]] = {}
    path = Path(path)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                records[record["exercise"]] = record
    return records


# ---------------------------------------------------------------------------------------------
# Jupyter display


def _show_check_failure(shell, etype, value, tb, tb_offset=None):
    """IPython handler for CheckFailed: show the message alone, not a traceback through our code."""
    shell._showtraceback(etype, value, [f"❌ {value}"])


def _install_ipython_handler() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((CheckFailed,), _show_check_failure)


_install_ipython_handler()

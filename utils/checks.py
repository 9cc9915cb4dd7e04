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
- every outcome is passed to `_record(exercise, status, message)`, which does nothing here: the
  grader's restored check cells replace it with their own collector (utils/grading/restore.py), so
  nothing the student's kernel writes is ever read back as a result.

Inside a check, `fail`, `expect` and `assert_tensor` raise `CheckFailed`; give them `mistakes`
(see `Mistake`) to turn a recognised wrong answer into a hint.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sysconfig
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

import torch

from utils.course import REPO_ROOT, SOLUTIONS_DIR, UTILS_DIR, is_chapter_checks_file
from utils.input_guard import guarded

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
# Exercises that call other exercises


def learner_function(outer: Any, name: str) -> Callable | None:
    """The function called `name` where the learner's `outer` function looks it up (a notebook's namespace)."""
    found = getattr(outer, "__globals__", {}).get(name)
    return found if callable(found) else None


def inner_failure(name: str, fn: Callable | None, inner_check: Callable) -> str | None:
    """The message with which the learner's own `fn` (exercise `name`) fails `inner_check`, quietly
    (nothing printed or recorded); None if it passes, is missing or is still a stub."""
    if fn is None:
        return None
    run = getattr(inner_check, "__wrapped__", inner_check)  # the check without @check's printing and recording
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run(fn)
    except CheckFailed as exc:
        return str(exc)
    except NotImplementedError:
        return None
    except Exception as exc:
        return _explain_exception(f"test_{name}", exc)[1]
    return None


@contextlib.contextmanager
def inner_exercise_first(name: str, fn: Callable | None, inner_check: Callable):
    """For the check of an exercise that calls exercise `name`: if the body fails and the learner's own
    `fn` fails `inner_check` too, report the inner failure, which is the cause, instead.

        with inner_exercise_first("pullback", pullback, test_pullback):
            ...  # the checks of direct_influence
    """
    try:
        yield
    except NotImplementedError:
        raise
    except Exception as outer:
        message = inner_failure(name, fn, inner_check)
        if message is None:
            raise
        raise CheckFailed(f"it calls your {name}, which fails its own check: {message.rstrip('.')}. "
                          f"Fix {name} first.") from outer


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

    `name` says what is compared, e.g. "from_dense(x).dense"; it starts every message. When the values
    differ and no mistake recognises `actual`, the message says what kind of difference it is (see
    `describe_difference`).
    """
    mistakes = tuple(mistakes)

    def problem(message: str) -> NoReturn:
        fail(f"{name} {message}.", actual, mistakes)

    if not isinstance(actual, torch.Tensor):
        if type(actual).__module__ == "numpy":
            raise CheckFailed(f"{name} should be a torch.Tensor, but is {_describe(actual)}. Hint: stay in torch "
                              "(no .numpy()), or convert back with torch.from_numpy(...).")
        problem(f"should be a torch.Tensor, but is {_describe(actual)}")
    if actual.shape != expected.shape:
        message = f"has shape {tuple(actual.shape)} but should have shape {tuple(expected.shape)}"
        if not hint_for(actual, mistakes):
            message += _shape_difference(tuple(actual.shape), tuple(expected.shape))
        problem(message)
    if check_dtype and actual.dtype != expected.dtype:
        message = f"has dtype {actual.dtype} but should have dtype {expected.dtype}"
        if not hint_for(actual, mistakes) and _first_mismatch(actual, expected, rtol, atol) is None:
            message += "; its values are right, only the dtype differs"
        problem(message)
    if check_device and actual.device != expected.device:
        problem(f"is on device {actual.device} but should be on {expected.device}")
    mismatch = _first_mismatch(actual, expected, rtol, atol)
    if mismatch is not None:
        hint = hint_for(actual, mistakes)
        if hint:
            raise CheckFailed(f"{name} {mismatch}. Hint: {hint}")
        kind = describe_difference(actual, expected, rtol=rtol, atol=atol)
        raise CheckFailed(f"{name} {mismatch}." + (f" Difference: {kind}" if kind else ""))


def _shape_difference(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """What kind of shape difference: dimensions reordered, an extra or missing dimension of size 1."""
    if sorted(got) == sorted(want):
        return ". Difference: the right dimensions in another order (a transpose or permute is missing or extra)"
    if [d for d in got if d != 1] == [d for d in want if d != 1]:
        return ". Difference: only dimensions of size 1 differ (a missing or extra squeeze, unsqueeze or [None])"
    return ""


def _tolerances(expected: torch.Tensor, rtol, atol) -> tuple[float, float]:
    default_rtol, default_atol = _TOLERANCES.get(expected.dtype, (1e-5, 1e-8))
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


def _first_mismatch(actual: torch.Tensor, expected: torch.Tensor, rtol, atol) -> str | None:
    want = expected.detach().cpu()
    got = actual.detach().cpu()
    if want.is_floating_point() or want.is_complex() or got.is_floating_point():
        # Compare in a common dtype, so that float64 against float32 compares values instead of crashing.
        common = torch.promote_types(got.dtype, want.dtype)
        if not (common.is_floating_point or common.is_complex):
            common = torch.float64
        rtol, atol = _tolerances(want if want.is_floating_point() else got, rtol, atol)
        close = torch.isclose(got.to(common), want.to(common), rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = got.to(want.dtype) == want
    if bool(close.all()):
        return None
    wrong = (~close).nonzero()
    where = tuple(wrong[0].tolist())
    return (
        f"has wrong values: {len(wrong)} of {close.numel()} elements differ, first at index "
        f"{where} (got {got[where].item():.6g}, expected {want[where].item():.6g})"
    )


# ---------------------------------------------------------------------------------------------
# What kind of difference?


def describe_difference(actual: Any, expected: torch.Tensor, *, rtol: float | None = None,
                        atol: float | None = None) -> str | None:
    """Say what kind of difference separates `actual` from `expected` (same shape), computed from the two
    tensors alone: NaN, all zeros, sign flipped (wholly or in part), absolute values, negatives dropped, squared
    or square-rooted, scaled or shifted by a constant (overall, per row, or per feature: a factor per column or
    the same vector added to every row), transposed, shifted by one along a dimension, every slice equal to the
    first one, normalised along another dimension, the right values in another order, wrong only where one
    side is zero (a mask), only some slices wrong, or the right total split differently. None if nothing fits."""
    if not (isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor)) or actual.shape != expected.shape:
        return None
    if actual.is_complex() or expected.is_complex() or actual.numel() == 0:
        return None
    try:
        return _difference(actual.detach().cpu().double(), expected.detach().cpu().double(),
                           *_tolerances(expected if expected.is_floating_point() else actual, rtol, atol))
    except Exception:  # a diagnosis must never hide the failure it explains
        return None


def _difference(a: torch.Tensor, e: torch.Tensor, rtol: float, atol: float) -> str | None:
    rtol = max(rtol, 1e-4)
    atol = max(atol, 1e-6 * float(e.abs().max()) if e.numel() else 0.0)

    def close(x: torch.Tensor, y: torch.Tensor) -> bool:
        return x.shape == y.shape and bool(torch.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True).all())

    nan = a.isnan() & ~e.isnan()
    if nan.any():
        return f"your result contains NaN ({int(nan.sum())} entries), where the expected one has numbers."
    if not e.isfinite().all() or not a.isfinite().all():
        return None
    if bool((a == 0).all()) and bool((e != 0).any()):
        return "your result is all zeros."
    has_negative = bool((e < 0).any())
    if close(a, -e):
        return "it is the expected result with its sign flipped (× -1)."
    if has_negative and close(a, e.abs()):
        return "it is the absolute value of the expected result: negative entries came out positive."
    if has_negative and close(a, e.clamp(min=0)):
        return ("negative entries are zero: it equals the expected result with its negative entries dropped "
                "(a test `> 0` where `!= 0` was meant, or a ReLU?).")
    if has_negative and close(a, e.clamp(max=0)) and bool((e > 0).any()):
        return "positive entries are zero: it equals the expected result with only its negative entries kept."
    if close(a.abs(), e.abs()):
        flipped = int((~torch.isclose(a, e, rtol=rtol, atol=atol)).sum())
        return (f"the magnitudes are right, but {flipped} entries have the wrong sign: a sign flipped on part of the "
                "result (a subtraction where an addition belongs, or the reverse?).")
    if close(a, e * e):
        return "it is the square of the expected result (squared twice, or a square root missing?)."
    if bool((e >= 0).all()) and bool((a >= 0).all()) and close(a * a, e):
        return "it is the square root of the expected result (a norm where its square belongs, or a square missing?)."
    norm = float((e * e).sum())
    if norm > 0:
        c = float((a * e).sum()) / norm
        if abs(c - 1) > 1e-3 and close(a, c * e):
            return f"it is the expected result scaled by a constant factor, {c:.4g}" + (
                " (a sign flip as well)." if c < 0 else ".")
    offset = float((a - e).mean())
    if abs(offset) > atol and close(a - offset, e):
        return f"it is the expected result plus a constant, {offset:+.4g}."
    for d1 in range(a.ndim):
        for d2 in range(d1 + 1, a.ndim):
            if a.shape[d1] == a.shape[d2] > 1 and close(a, e.transpose(d1, d2)) and not close(e, e.transpose(d1, d2)):
                return f"it is the expected result transposed (dimensions {d1} and {d2} swapped)."
    if a.ndim >= 1 and a.shape[0] > 1 and close(a, e[:1].expand_as(e)):
        return ("every entry along dimension 0 equals the expected entry 0: was only the first row (or sequence "
                "of the batch) used, then repeated?")
    for d in range(a.ndim):
        n = a.shape[d]
        if n < 2:
            continue
        later_a, earlier_a = a.narrow(d, 1, n - 1), a.narrow(d, 0, n - 1)
        later_e, earlier_e = e.narrow(d, 1, n - 1), e.narrow(d, 0, n - 1)
        if close(later_e, earlier_e):
            continue  # the expected result does not change along d: a shift would not show
        if bool((earlier_e != 0).any()) and close(later_a, earlier_e):
            return (f"it is the expected result shifted by one along dimension {d}: your index i + 1 holds the "
                    f"expected index i (off by one position or layer?).")
        if bool((later_e != 0).any()) and close(earlier_a, later_e):
            return (f"it is the expected result shifted by one along dimension {d}: your index i holds the "
                    f"expected index i + 1 (off by one position or layer?).")
    for d in range(a.ndim):
        if a.shape[d] > 1:
            for how, reduce in (("sum", e.sum(d, keepdim=True)), ("mean", e.mean(d, keepdim=True))):
                if close(a, reduce.expand_as(e)):
                    return (f"every entry along dimension {d} equals the {how} of the expected entries along it: "
                            f"a {how} over dimension {d} (over the batch?) where none belongs.")
    wrong_dim = _normalised_along_another_dim(a, e)
    if wrong_dim:
        return wrong_dim
    if a.ndim >= 1 and a.shape[-1] > 1 and bool((a >= 0).all()) and close(a.sum(-1), torch.ones_like(a.sum(-1))) \
            and not close(e.sum(-1), torch.ones_like(e.sum(-1))):
        return ("it sums to 1 along the last dimension, like probabilities: a softmax where none belongs?")
    if a.numel() > 1 and close(a.flatten().sort().values, e.flatten().sort().values):
        return "it holds the right values, in a different order."
    if a.ndim >= 2 and a.shape[-1] > 1:
        row_norm = (e * e).sum(-1, keepdim=True)
        if bool((row_norm > 0).any()):
            factors = torch.where(row_norm > 0, (a * e).sum(-1, keepdim=True) / row_norm.clamp(min=1e-300), 1.0)
            if close(a, factors * e) and not close(factors, torch.ones_like(factors)):
                return ("each row (along the last dimension) is the expected row times its own factor: a "
                        "normalisation or scale per row is missing, extra or the wrong one.")
        offsets = (a - e).mean(-1, keepdim=True)
        if close(a - offsets, e):
            return ("each row (along the last dimension) is the expected row plus its own constant: a shift per "
                    "row, such as a log_softmax or a missing centring.")
        rows_a, rows_e = a.reshape(-1, a.shape[-1]), e.reshape(-1, e.shape[-1])
        if rows_a.shape[0] > 1:
            lead = tuple(range(a.ndim - 1))
            col_norm = (e * e).sum(lead, keepdim=True)
            if bool((col_norm > 0).all()):
                col_factors = (a * e).sum(lead, keepdim=True) / col_norm
                if close(a, col_factors * e):
                    return ("each entry along the last dimension has its own factor, the same in every row: a "
                            "weight or scale per feature (such as LayerNorm's w, or a norm per latent) is missing, "
                            "extra or the wrong one.")
            shift = (rows_a - rows_e).mean(0, keepdim=True)
            if close(rows_a - shift, rows_e):
                return ("every row differs from the expected one by the same vector: a term added to every row "
                        "(a bias?) is missing, extra or the wrong one.")
    differs = ~torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bool((e == 0).any()) and bool((e != 0).any()):
        if bool((e[differs] == 0).all()):
            return (f"it is right wherever the expected result is nonzero, but has nonzero entries "
                    f"({int(differs.sum())}) where it should be zero: a mask, threshold or ReLU is missing?")
        if bool((a[differs] == 0).all()):
            return (f"it is right except for {int(differs.sum())} entries that are zero where the expected ones are "
                    "not: an extra mask, threshold or ReLU, or entries never filled in?")
    for d in range(a.ndim if a.ndim >= 2 else 0):  # for 1-D, "k of n elements differ" says it already
        n = a.shape[d]
        if n < 2:
            continue
        good = [close(a.select(d, i), e.select(d, i)) for i in range(n)]
        informative = [bool((e.select(d, i) != 0).any()) for i in range(n)]  # an all-zero slice matches trivially
        if any(g and i for g, i in zip(good, informative)) and not all(good):
            bad = [i for i, ok in enumerate(good) if not ok]
            shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            extra = (" Only index 0 is right: was only the first row (or sequence of the batch) computed?"
                     if good[0] and sum(good) == 1 else "")
            return (f"only some entries along dimension {d} are wrong: {len(bad)} of {n} (index {shown}); "
                    f"the others match.{extra}")
    total = float(e.sum())
    if a.numel() >= 3 and abs(total) > 1e-3 * float(e.abs().sum()) + atol and close(a.sum(), e.sum()):
        return ("the entries add up to the right total, but it is split differently among them: part of it is "
                "counted in the wrong entries.")
    return None


_NORMALISATIONS = {
    # name: test that x (float64) is normalised this way along dimension d
    "standardised (mean 0, variance 1)": lambda x, d: _near(x.mean(d), 0.0) and (
        _near(x.pow(2).mean(d), 1.0, 1e-2) or _near(x.var(d), 1.0, 1e-2)),
    "scaled to unit norm": lambda x, d: _near(x.pow(2).sum(d), 1.0, 1e-3),
    "a probability distribution (non-negative, summing to 1)": lambda x, d: bool((x >= 0).all()) and _near(
        x.sum(d), 1.0, 1e-3),
}


def _near(x: torch.Tensor, value: float, tol: float = 1e-3) -> bool:
    return bool(((x - value).abs() <= tol * max(1.0, abs(value))).all())


def _normalised_along_another_dim(a: torch.Tensor, e: torch.Tensor) -> str | None:
    """The expected result is normalised along one dimension; yours is normalised the same way along another."""
    dims = [d for d in range(a.ndim) if a.shape[d] > 2]
    for how, test in _NORMALISATIONS.items():
        for d_e in dims:
            if not test(e, d_e) or test(a, d_e):
                continue
            for d_a in dims:
                if d_a != d_e and test(a, d_a):
                    return (f"it is {how} along dimension {d_a}, where the expected result is so along dimension "
                            f"{d_e}: normalised along the wrong dimension.")
    return None


def _describe(value: Any) -> str:
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return f"a numpy array of shape {tuple(value.shape)}"
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


def _guards(value: Any, mutates: tuple[str, ...], on_change: Callable[[str], None]) -> Any:
    """A function the check is given, wrapped in the inputs-unchanged guard (utils/input_guard.py),
    unless it is ours (utils/) or a library's; anything else as it is."""
    if not isinstance(value, types.FunctionType) or getattr(value, "__guarded__", False):
        return value
    path = Path(value.__code__.co_filename)
    if value.__code__.co_filename.startswith("<frozen") or any(
            part in ("site-packages", "dist-packages") for part in path.parts):
        return value
    resolved = path.resolve()
    if any(resolved.is_relative_to(d) for d in (UTILS_DIR, *_LIBRARY_DIRS)):
        return value
    return guarded(value, mutates, on_change)


def check(fn: Callable[..., Any] | None = None, *, mutates: tuple[str, ...] = ()) -> Callable[..., None]:
    """Give a chapter check the uniform pass line, failure messages and grading record, and guard
    every function it is given against changing its arguments in place (`mutates` names the
    arguments an exercise is meant to change, e.g. a hook's activation). `@check` or
    `@check(mutates=("activation",))`."""
    if fn is None:
        return functools.partial(check, mutates=mutates)
    check_name = fn.__name__
    exercise = check_name.removeprefix("test_")

    @functools.wraps(fn)
    def run_check(*args: Any, **kwargs: Any) -> None:
        # An in-place edit is reported after the check, unless the check's own message already names
        # one ("... changed ..."): the check knows which call it was.
        changes: list[str] = []
        args = tuple(_guards(a, mutates, changes.append) for a in args)
        kwargs = {k: _guards(v, mutates, changes.append) for k, v in kwargs.items()}
        try:
            fn(*args, **kwargs)
        except CheckFailed as exc:
            own = changes and "changed" not in str(exc)
            message = f"{check_name} failed: {changes[0] if own else exc}"
            _record(exercise, FAILED, message)
            raise CheckFailed(message) from exc
        except Exception as exc:
            status, message = _explain_exception(check_name, exc)
            if changes and status != NOT_IMPLEMENTED:
                status, message = FAILED, f"{check_name} failed: {changes[0]}"
            _record(exercise, status, message)
            raise CheckFailed(message) from exc
        if changes:
            message = f"{check_name} failed: {changes[0]}"
            _record(exercise, FAILED, message)
            raise CheckFailed(message)
        _record(exercise, PASSED, f"{check_name} passed")
        print(f"✅ {check_name} passed")

    return run_check


def _record(exercise: str, status: str, message: str) -> None:
    """Where every check outcome goes. A no-op in a notebook; the grader swaps in a collector, so keep
    this name and signature (utils/grading/restore.py relies on them)."""


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

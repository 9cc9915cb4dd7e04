"""From what the worker observed to one result per exercise, and the reports.

Exercise results: passed, failed, not implemented (from the outcome the restored check cell
printed after its marker), timed out (its check cell was interrupted), not run (its check cell
raised before the check completed, or never ran).

Notebook status, graded: ok (ran; at least one check passed), failed (no check passed),
incomplete (an exercise is still a stub), error (a cell raised something other than a failed
check), timeout (a cell was interrupted, or the notebook's time budget ran out), crashed (the
kernel or its worker died). Not graded: unreadable, not a course notebook, wrong chapter, grader
error. `review` lists what an instructor should look at (see `utils.grading.review`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tabulate import tabulate

from utils import build
from utils.grading.restore import cell_name

PASSED, FAILED, NOT_IMPLEMENTED, TIMED_OUT, NOT_RUN = "passed", "failed", "not implemented", "timed out", "not run"
_RESULTS = {PASSED, FAILED, NOT_IMPLEMENTED}
NOT_GRADED = ("unreadable", "not a course notebook", "wrong chapter", "grader error")
_SHORT = {PASSED: "pass", FAILED: "FAIL", NOT_IMPLEMENTED: "todo", TIMED_OUT: "time", NOT_RUN: "-"}


@dataclass
class Grade:
    notebook: str  # short name, relative to the folder given
    chapter: str | None
    status: str
    detail: str = ""
    exercises: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> result, message
    review: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: str = ""
    seconds: float = 0.0  # wall time spent grading it

    @property
    def score(self) -> str:
        if self.status in NOT_GRADED:
            return ""
        passed = sum(e["result"] == PASSED for e in self.exercises.values())
        return f"{passed}/{len(self.exercises)}"


def _records(marker: str | None) -> dict[str, tuple[str, str]]:
    try:
        rows = json.loads(marker) if marker is not None else []
    except ValueError:
        return {}
    return {
        r[0]: (r[1], str(r[2]))
        for r in rows if isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and r[1] in _RESULTS
    }


def grade_from_events(grade: Grade, restored, exercises: list[str], events: list[dict], end: dict | None) -> Grade:
    cells = {e["cell"]: e for e in events if isinstance(e.get("cell"), int)}

    def name(event) -> str:
        return cell_name(event.get("count"), restored.source_of(event["cell"]))

    if end is None:
        why = "the kernel's worker process was killed"
    else:
        why = {"dead": "the kernel died first", "budget": "the time budget ran out first"}.get(end["end"], end.get("detail", ""))

    results: dict[str, dict[str, str]] = {}
    for index, names in sorted(restored.checks.items()):
        event = cells.get(index)
        records = _records(event.get("marker")) if event else {}
        for exercise in names:
            if exercise in records:
                result, message = records[exercise]
            elif event is None:
                result, message = NOT_RUN, f"its check cell never ran ({why})"
            elif event.get("timed_out"):
                result, message = TIMED_OUT, f"its check cell, {name(event)}, {event['evalue']}"
            else:
                result = NOT_RUN
                error = f"raised {event['ename']}: {event['evalue']}" if event.get("ename") else "ended without a result"
                message = f"its check did not run: {name(event)} {error}"
            results[exercise] = {"result": result, "message": message}
    grade.exercises = {e: results.get(e, {"result": NOT_RUN, "message": "no check cell"}) for e in exercises}

    timed_out = [e for e in events if e.get("timed_out")]
    errors = [e for e in events if e.get("ename") and e["ename"] != "CheckFailed" and not e.get("timed_out")]
    first_error = errors[0] if errors else None
    first_is_stub = first_error is not None and first_error["ename"] == "NotImplementedError" and str(
        first_error["evalue"]).endswith(build.STUB_MESSAGE_END)
    capped = [e for e in events if e.get("output_capped")]
    grade.notes += [f"{name(e)}: output beyond the limit was dropped" for e in capped]
    if end is None or end["end"] in ("dead", "error"):
        grade.status, grade.detail = "crashed", why if end is None else end["detail"]
    elif end["end"] == "budget":
        grade.status, grade.detail = "timeout", end["detail"]
    elif timed_out:
        grade.status, grade.detail = "timeout", f"{name(timed_out[0])} {timed_out[0]['evalue']}"
    elif first_error is not None and not first_is_stub:
        grade.status, grade.detail = "error", f"{name(first_error)} raised {first_error['ename']}: {first_error['evalue']}"
    elif first_is_stub or any(e["result"] == NOT_IMPLEMENTED for e in grade.exercises.values()):
        grade.status = "incomplete"
        grade.detail = (f"{name(first_error)} calls an unfinished exercise: {first_error['evalue']}" if first_is_stub
                        else "some exercises are not implemented")
    elif not any(e["result"] == PASSED for e in grade.exercises.values()):
        grade.status, grade.detail = "failed", "no check passed"
    else:
        grade.status = "ok"
    return grade


# ---------------------------------------------------------------------------------------------
# Reports


def _atomic_write(path: Path, text: str) -> None:
    """Write `path` whole or not at all, from a temporary file of a fresh name; whatever else sits at
    `path` (a directory or link a notebook put there to make the grader crash and leave its own
    file behind) is removed first."""
    # a path that is not UTF-8 reaches here as surrogates; write its bytes as U+FFFD, never crash
    data = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _has_surrogates(text) else text
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    with os.fdopen(handle, "w", encoding="utf-8", errors="replace") as f:
        f.write(data)
    os.chmod(partial, 0o644)  # as a plain write would leave it (mkstemp makes it private)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    os.replace(partial, path)


def _inert(cell) -> str:
    """A CSV cell that a spreadsheet shows as text: a cell starting with = + - @ (or a tab or
    carriage return) would run as a formula (a notebook named '=1+1 (formula).ipynb' did)."""
    text = str(cell)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def write_reports(grades: list[Grade], out: Path) -> list[list[str]]:
    """(Re)write grades.csv and grades.json in `out`; return the CSV rows (header first)."""
    out.mkdir(parents=True, exist_ok=True)
    exercises = list(dict.fromkeys(name for g in grades for name in g.exercises))
    rows = [["notebook", "chapter", "status", *exercises, "score", "review"]]
    for g in grades:
        results = [g.exercises.get(name, {}).get("result", "") for name in exercises]
        rows.append([g.notebook, g.chapter or "", g.status, *results, g.score, "; ".join(g.review)])
    lines = []

    class _Lines:
        def write(self, text):
            lines.append(text)

    csv.writer(_Lines()).writerows([[_inert(cell) for cell in row] for row in rows])
    _atomic_write(out / "grades.csv", "".join(lines))
    report = [{**asdict(g), "score": g.score} for g in grades]
    _atomic_write(out / "grades.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return rows


def tables(grades: list[Grade]) -> str:
    """One table per chapter (exercises numbered, with a legend), then the notebooks not graded
    and those flagged for review."""
    parts = []
    chapters = list(dict.fromkeys(g.chapter for g in grades if g.status not in NOT_GRADED))
    for chapter in chapters:
        mine = [g for g in grades if g.chapter == chapter and g.status not in NOT_GRADED]
        exercises = list(dict.fromkeys(n for g in mine for n in g.exercises))
        rows = [
            [g.notebook, g.status, *(_SHORT.get(g.exercises.get(e, {}).get("result"), "") for e in exercises), g.score,
             "yes" if g.review else ""]
            for g in mine
        ]
        headers = ["notebook", "status", *(str(i) for i in range(1, len(exercises) + 1)), "score", "review"]
        legend = ", ".join(f"{i} {e}" for i, e in enumerate(exercises, start=1))
        parts.append(f"Chapter {chapter}\n{tabulate(rows, headers=headers)}\nExercises: {legend}")
    if chapters:
        parts.append("pass = passed, FAIL = failed, todo = not implemented, time = timed out, - = not run")
    skipped = [[g.notebook, g.status, g.detail] for g in grades if g.status in NOT_GRADED]
    if skipped:
        parts.append("Not graded\n" + tabulate(skipped, headers=["notebook", "status", "why"]))
    flagged = [g for g in grades if g.review]
    if flagged:
        parts.append("For review\n" + "\n".join(f"  {g.notebook}: " + "; ".join(g.review) for g in flagged))
    return "\n\n".join(parts)

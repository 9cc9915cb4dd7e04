"""Grade student notebooks, one result per exercise.

    python -m utils.grade PATH... --out DIR [--timeout SECONDS] [--kernel NAME]

PATH is a notebook or a folder searched recursively for notebooks. Each notebook runs in a fresh
kernel, in its own folder, with errors allowed, so a broken exercise does not stop the grading of
the next one. The checks it calls append their outcomes to a log whose path the grader passes in
$COURSE_CHECK_LOG (see utils.checks). Writes DIR/grades.csv (a row per notebook, a column per
exercise) and DIR/grades.json (with every message), and prints the table.

Exercise results: passed, failed, not implemented, or not run (its check never completed, e.g.
because the cell defining the exercise raised, or the notebook timed out earlier).
Notebook status: ok (ran to the end; failed checks are reported per exercise), incomplete (the
first cell to raise called an exercise that is still a stub), error (a cell raised something
other than a failed check), timeout (a cell ran longer than --timeout),
crashed (the kernel died), unreadable (not a notebook).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from tabulate import tabulate

from utils import build, course
from utils.checks import PASSED, RECORD_ENV, read_records

NOT_RUN = "not run"


@dataclass
class Grade:
    notebook: str
    chapter: str | None
    status: str
    detail: str = ""  # what went wrong with the notebook as a whole
    exercises: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> result, message

    @property
    def score(self) -> str:
        passed = sum(e["result"] == PASSED for e in self.exercises.values())
        return f"{passed}/{len(self.exercises)}"


def find_notebooks(paths: list[str]) -> list[Path]:
    notebooks = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            notebooks += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file():
            notebooks.append(path)
        else:
            raise SystemExit(f"error: {raw} does not exist")
    return notebooks


def chapter_of(notebook: nbformat.NotebookNode, path: Path) -> str | None:
    """The chapter named in the notebook's metadata, else the one its file name starts with."""
    chapters = course.chapter_names()
    named = notebook.metadata.get("course", {}).get("chapter")
    if named in chapters:
        return named
    return next((c for c in chapters if path.stem.startswith(c)), None)


def exercises_of(notebook: nbformat.NotebookNode, chapter: str | None) -> list[str]:
    """Every exercise the notebook should check: from the chapter's source when the chapter is
    known, else from the `tests.test_<name>(` calls in its own cells."""
    if chapter is not None:
        return build.parse(chapter).exercises
    return build.exercises_in(cell.source for cell in notebook.cells if cell.cell_type == "code")


def grade_notebook(path: Path, timeout: int, kernel: str) -> Grade:
    shown = _display_path(path)
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as err:  # not JSON, not a notebook
        return Grade(shown, None, "unreadable", f"{type(err).__name__}: {err}")
    chapter = chapter_of(notebook, path)
    for cell in notebook.cells:  # outputs left by the student must not count as errors of this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None

    status, detail, records = _execute(notebook, path.parent, timeout, kernel)
    if status == "ok":
        status, detail = _first_error(notebook)
    grade = Grade(shown, chapter, status, detail)
    for name in dict.fromkeys([*exercises_of(notebook, chapter), *records]):
        record = records.get(name)
        if record is None:
            message = f"its check did not run to the end ({status}: {detail})"
            grade.exercises[name] = {"result": NOT_RUN, "message": message}
        else:
            grade.exercises[name] = {"result": record["status"], "message": record["message"]}
    return grade


def _execute(notebook: nbformat.NotebookNode, folder: Path, timeout: int, kernel: str):
    """Run the notebook in place in a fresh kernel; return (status, detail, check records)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "checks.jsonl"
        env = {**os.environ, RECORD_ENV: str(log), "COURSE_ROOT": str(course.REPO_ROOT)}
        client = NotebookClient(
            notebook,
            timeout=timeout,
            allow_errors=True,
            kernel_name=kernel,
            resources={"metadata": {"path": str(folder.resolve())}},
        )
        status, detail = "ok", ""
        # The kernel's own stderr (startup warnings) goes to a file, read only if it dies.
        with open(Path(tmp) / "kernel-stderr.txt", "w+", encoding="utf-8") as kernel_stderr:
            try:
                client.execute(env=env, stderr=kernel_stderr)
            except CellTimeoutError:
                status, detail = "timeout", f"a cell ran longer than {timeout} s"
            except DeadKernelError:
                kernel_stderr.seek(0)
                last_words = kernel_stderr.read().strip().splitlines()[-1:]
                status, detail = "crashed", " ".join(["the kernel died.", *last_words])
            except Exception as err:  # e.g. no such kernel: report it and go on with the next notebook
                status, detail = "crashed", f"{type(err).__name__}: {err}"
        return status, detail, read_records(log)


def _first_error(notebook: nbformat.NotebookNode) -> tuple[str, str]:
    """("error", what) for the first cell that raised something other than a failed check;
    ("incomplete", what) when that was an unfinished exercise's stub (a demo cell calling it)."""
    code_cells = (c for c in notebook.cells if c.cell_type == "code")
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.output_type == "error" and output.ename != "CheckFailed":
                if output.ename == "NotImplementedError" and output.evalue.endswith(build.STUB_MESSAGE_END):
                    return "incomplete", f"code cell {number} calls an unfinished exercise: {output.evalue}"
                return "error", f"code cell {number} raised {output.ename}: {output.evalue}"
    return "ok", ""


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_reports(grades: list[Grade], out: Path) -> list[list[str]]:
    """Write grades.csv and grades.json into `out`; return the table rows (header first)."""
    out.mkdir(parents=True, exist_ok=True)
    exercises = list(dict.fromkeys(name for g in grades for name in g.exercises))
    rows = [["notebook", "chapter", "status", *exercises, "score"]]
    for g in grades:
        results = [g.exercises.get(name, {}).get("result", "") for name in exercises]
        rows.append([g.notebook, g.chapter or "", g.status, *results, g.score])
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    report = [{**asdict(g), "score": g.score} for g in grades]
    (out / "grades.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, or folders of notebooks")
    parser.add_argument("--out", required=True, type=Path, help="folder for grades.csv and grades.json")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run them in (default python3)")
    args = parser.parse_args(argv)

    notebooks = find_notebooks(args.paths)
    if not notebooks:
        print("error: no notebooks found", file=sys.stderr)
        return 2
    grades = []
    for number, path in enumerate(notebooks, start=1):
        print(f"[{number}/{len(notebooks)}] grading {_display_path(path)}", flush=True)
        grades.append(grade_notebook(path, args.timeout, args.kernel))
    rows = write_reports(grades, args.out)
    print()
    print(tabulate(rows[1:], headers=rows[0]))
    print(f"\nDetails, with every message: {args.out / 'grades.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

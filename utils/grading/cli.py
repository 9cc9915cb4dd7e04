"""Grade student notebooks, one result per exercise.

    python -m utils.grade PATH... --out DIR [--chapter NN] [--timeout SECONDS] [--budget SECONDS]
                          [--memory-gb GB] [--output-mb MB] [--kernel NAME]

PATH is a notebook or a folder searched recursively for notebooks. DIR/grades.csv (a row per
notebook, a column per exercise) and DIR/grades.json (with every message) are rewritten after
each notebook, so a run cut short keeps every grade done so far. At the end one table per
chapter is printed.

How a result is made trustworthy:
- The chapter comes from the notebook's content (its markdown, setup and check cells), or is
  fixed with --chapter: a notebook of another chapter is `wrong chapter`, an unrelated one `not a
  course notebook`; neither is run. The exercise list comes from the chapter source.
- The setup and check cells are put back from the chapter source; each check cell loads the
  chapter's checks, utils.checks and the reference solutions afresh from the course files and
  prints its outcomes after a marker drawn at random for that cell, which the grader reads from
  the cell's output. Nothing the notebook writes (a check log, patched checks) is read.
- Each notebook runs in a throwaway copy of the course (only its chapter's checks), from a fresh
  kernel in its own worker process and session, with a minimal environment, a memory cap and an
  output cap; a timed-out cell is interrupted and the next one runs; a notebook has a time
  budget; afterwards every process it started is killed.
- What cannot be prevented inside the kernel's own process (changing torch or builtins, reading
  the reference solutions, touching files) is flagged in the `review` column from a static scan
  of the student's own cells, as are copies of the reference solution, edited or deleted check
  cells and changed course files.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat

from utils import course
from utils.grading import kernel_sandbox
from utils.grading import review as reviewing
from utils.grading.restore import chapter_source, claimed_chapter, recognise, resolve_chapter, restore
from utils.grading.results import Grade, _atomic_write, grade_from_events, tables, write_reports
from utils.grading.sandbox import Scratch, Snapshot, become_subreaper, changed_files, end_tree, minimal_env

MAX_NOTEBOOK_BYTES = 50 * 2**20
_EVENT_BYTES = 8 * 2**20
_PRINTED_BYTES = 4 * 2**20  # text kept per notebook for --printed (on top of _EVENT_BYTES)
_WORKERS: set[int] = set()  # pids of the workers running now (several with --jobs)
_WORKERS_LOCK = threading.Lock()


def printable_name(name: str) -> str:
    """A file name as text that any report can hold: a name that is not UTF-8 (its bytes come back
    from the file system as surrogates) once left the grader without a grades.csv at all."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def find_notebooks(paths: list[str]) -> list[tuple[Path, str]]:
    """(path, short name) of every notebook: names are relative to the folder given."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for nb in sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts):
                found.append((nb, printable_name(nb.relative_to(path).as_posix())))
        elif path.exists():
            found.append((path, printable_name(path.name)))
        else:
            raise SystemExit(f"error: {raw} does not exist")
    names = [name for _, name in found]
    return [(p, name if names.count(name) == 1 else printable_name(str(p))) for p, name in found]


def read_notebook(path: Path):
    # a FIFO, a device or a link to one named *.ipynb would block the read (a FIFO hung the grader)
    if not path.is_file():
        raise ValueError("not a regular file")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    notebook = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
    if not isinstance(notebook.get("cells"), list) or not all(isinstance(c, dict) for c in notebook.cells):
        raise ValueError("no list of cells")
    return notebook


def grade_notebook(path: Path, short: str, args, snapshot: Snapshot, expected: str | None) -> Grade:
    try:
        notebook = read_notebook(path)
    except Exception as err:
        return Grade(short, None, "unreadable", f"{type(err).__name__}: {err}"[:300], path=str(path))
    found, share = recognise(notebook)
    if found is None:
        return Grade(short, expected, "not a course notebook",
                     f"it holds {share:.0%} of any chapter's cells", path=str(path))
    if expected is not None and found != expected:
        return Grade(short, expected, "wrong chapter", f"it is a notebook of chapter {found}, not {expected}", path=str(path))
    chapter = found
    if args.exercises and not set(args.exercises) & set(chapter_source(chapter).exercises):
        return Grade(short, chapter, "wrong chapter", f"none of the exercises to grade is in chapter {chapter}", path=str(path))
    grade = Grade(short, chapter, "crashed", path=str(path))
    claimed = claimed_chapter(notebook, path.name)
    if claimed is not None and claimed != chapter:
        grade.review.append(f"its metadata or file name says chapter {claimed}")

    with Scratch() as scratch:
        files = snapshot.write(chapter, scratch.course)
        restored = restore(notebook, chapter, str(scratch.course), args.exercises)
        source = chapter_source(chapter)
        copied_reasons, copied = reviewing.copies_solution(notebook, source)
        grade.review += copied_reasons + restored.edited + reviewing.scan(restored, source)
        if copied and not copied_reasons:
            grade.notes.append(f"exercise cells near-identical to the reference: {', '.join(copied)}")
        if restored.dropped:
            grade.notes.append(f"{restored.dropped} extra setup/check cells were dropped")
        protected = {n: d.decode() for n, d in files.items() if n.endswith(".py")}
        events, end = run_worker(restored, scratch, protected, args)
        tampered = sorted({p for e in events for p in e.get("tampered", [])} | set(changed_files(scratch.course, files)))
    if not args.sandboxed:
        grade.notes.append("graded without the OS sandbox")
    if tampered:
        grade.review.append(f"it changed course files (put back before each check): {', '.join(tampered[:5])}")
    if any(e.get("markers", 0) > 1 for e in events):
        grade.review.append("a check cell printed its result marker more than once")
    exercises = [e for e in source.exercises if not args.exercises or e in args.exercises]
    if args.printed:
        write_printed(args.printed, short, events)
    return grade_from_events(grade, restored, exercises, events, end)


def printed_path(folder: Path, short: str) -> Path:
    """Where --printed puts the text of the notebook graded as `short` (its relative path, flattened)."""
    return folder / (printable_name(short).replace("/", "__").replace("\\", "__").removesuffix(".ipynb") + ".txt")


def write_printed(folder: Path, short: str, events: list[dict]) -> None:
    """What the notebook showed as text, cell after cell, as the worker read it (the kernel never
    writes this file)."""
    cells = sorted((e["cell"], e.get("text") or "") for e in events if isinstance(e.get("cell"), int))
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(printed_path(folder, short), "\n".join(text for _, text in cells if text))


def run_worker(restored, scratch: Scratch, protected: dict[str, str], args) -> tuple[list[dict], dict | None]:
    """Run the notebook in a worker process; return its events and its end event (None if it died)."""
    token = secrets.token_hex(12)
    job = {
        "notebook": nbformat.writes(restored.notebook),
        "check_cells": {str(i): nonce for i, nonce in restored.nonces.items()},
        "timeout": args.timeout,
        "budget": args.budget,
        "kernel": args.kernel,
        "output_limit": int(args.output_mb * 2**20),
        "course_root": str(scratch.course),
        "cwd": str(scratch.work),
        "kernel_log": str(scratch.root / "kernel.log"),
        "protected": protected,
        "memory_gb": args.memory_gb,
        "keep_text": _PRINTED_BYTES if args.printed else 0,
        "sandbox": scratch.sandbox_folders() if args.sandboxed else None,
    }
    events: list[dict] = []
    with open(scratch.root / "worker.log", "w") as worker_log:
        with _WORKERS_LOCK:  # so that another notebook's clean-up never takes this worker for an orphan
            worker = subprocess.Popen(
                [sys.executable, "-m", "utils.grading.worker"],
                cwd=scratch.course,
                env=minimal_env(scratch, token, threads=max(1, (os.cpu_count() or 1) // max(1, args.jobs))),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=worker_log,
                start_new_session=True,
            )
            _WORKERS.add(worker.pid)

        def read() -> None:
            total = 0
            for line in worker.stdout:
                total += len(line)
                if total > _EVENT_BYTES + (_PRINTED_BYTES if args.printed else 0):
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    events.append(event)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            worker.stdin.write(json.dumps(job).encode())
            worker.stdin.close()
        except OSError:
            pass
        overran = False
        try:
            worker.wait(timeout=args.budget + 120)  # the budget, plus starting and stopping the kernel
        except subprocess.TimeoutExpired:
            overran = True
        with _WORKERS_LOCK:
            _WORKERS.discard(worker.pid)
            end_tree(worker.pid, token, frozenset(_WORKERS))
        try:
            worker.wait(timeout=10)
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass
        reader.join(timeout=10)
    ends = [e for e in events if "end" in e]
    end = ends[-1] if ends else None
    if end is None and overran:
        end = {"end": "budget", "detail": f"the notebook ran longer than its budget of {args.budget} s"}
    return events, end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, or folders of notebooks")
    parser.add_argument("--out", required=True, type=Path, help="folder for grades.csv and grades.json")
    parser.add_argument("--chapter", help="the chapter every notebook must be (e.g. 01); others are not graded")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell (default 300)")
    parser.add_argument("--budget", type=int, default=1800, help="seconds allowed per notebook (default 1800)")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="memory cap of a notebook's kernel (default 8)")
    parser.add_argument("--output-mb", type=float, default=20.0, help="output a cell may print before it is stopped (default 20)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run them in (default python3)")
    parser.add_argument("--exercises", type=lambda t: [e for e in t.split(",") if e],
                        help="grade only these exercises (comma-separated names); their checks alone are run")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (default 1)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run kernels as this user, without the bubblewrap sandbox (every grade notes it)")
    parser.add_argument("--printed", type=Path, metavar="DIR",
                        help="also write what each notebook showed as text (its first 4 MB) to DIR/NAME.txt")
    args = parser.parse_args(argv)
    expected = resolve_chapter(args.chapter) if args.chapter else None
    if args.exercises:
        known = {e for c in course.chapter_names() for e in chapter_source(c).exercises}
        unknown = [e for e in args.exercises if e not in known]
        if unknown:
            raise SystemExit(f"error: no exercise named {', '.join(unknown)}")

    notebooks = find_notebooks(args.paths)
    if not notebooks:
        print("error: no notebooks found", file=sys.stderr)
        return 2
    become_subreaper()
    why_not = "--no-sandbox was given" if args.no_sandbox else kernel_sandbox.problem()
    args.sandboxed = why_not is None
    if why_not:
        print(f"warning: kernels run without the OS sandbox, as this user, able to see other processes and files: "
              f"{why_not}", file=sys.stderr, flush=True)
    snapshot = Snapshot()
    grades: list[Grade | None] = [None] * len(notebooks)

    def grade_one(number: int) -> Grade:
        path, short = notebooks[number]
        started = time.monotonic()
        try:
            grade = grade_notebook(path, short, args, snapshot, expected)
        except Exception as err:  # a bug of ours must not cost the other notebooks their grades
            grade = Grade(short, expected, "grader error", f"{type(err).__name__}: {err}"[:300], path=str(path))
        grade.seconds = round(time.monotonic() - started, 1)
        return grade

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(grade_one, number): number for number in range(len(notebooks))}
        for done, future in enumerate(as_completed(futures), start=1):
            grade = grades[futures[future]] = future.result()
            write_reports([g for g in grades if g is not None], args.out)  # every grade is kept at once
            print(f"[{done}/{len(notebooks)}] {grade.notebook}: {grade.status} {grade.score}".rstrip(), flush=True)
    print()
    print(tables(grades))
    print(f"\nDetails, with every message: {args.out / 'grades.json'}")
    return 0

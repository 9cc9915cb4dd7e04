"""Shared fixtures: chapter checks loaded by path, student notebooks made from chapter 01, and one
grader run over every chapter's exercise and solution notebooks (`graded_course`).

There is deliberately no tests/__init__.py: notebooks `import tests` to get their chapter's
checks, and a regular package named `tests` at the repository root could shadow them.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils import course

CHAPTER = "01_latent_gradients"


@pytest.fixture(scope="session")
def checks01():
    return course.load_checks(CHAPTER)


def _with_exercise(notebook: nbformat.NotebookNode, edit) -> nbformat.NotebookNode:
    """A copy of `notebook` whose SparseTensor exercise cell source is replaced by `edit(source)`."""
    notebook = copy.deepcopy(notebook)
    # The SparseTensor exercise, the first of the chapter (the later ones build on it).
    cell = next(c for c in notebook.cells if "exercise" in c.metadata.get("tags", []) and "class SparseTensor" in c.source)
    new_source = edit(cell.source)
    assert new_source != cell.source, "the fixture edit did not apply: update tests/conftest.py"
    cell.source = new_source
    return notebook


@pytest.fixture(scope="session")
def student_notebooks(tmp_path_factory) -> dict[str, Path]:
    """Submissions of chapter 01, in a folder outside the repository (as a grader sees them):
    solved, stub (the untouched exercise notebook), wrong (transposed indices), crashing (the
    exercise cell raises before SparseTensor is defined, so its check never runs) and raising
    (from_dense raises when the check calls it)."""
    solved = nbformat.read(course.solution_notebook_path(CHAPTER), as_version=4)
    notebooks = {
        "solved": solved,
        "stub": nbformat.read(course.exercise_notebook_path(CHAPTER), as_version=4),
        "wrong": _with_exercise(
            solved, lambda s: s.replace("indices = is_nonzero.nonzero()", "indices = is_nonzero.nonzero().T")
        ),
        "crashing": _with_exercise(solved, lambda s: "1 / 0  # a slip that stops the cell\n" + s),
        "raising": _with_exercise(solved, lambda s: s.replace("dense != 0", "dense.nonzero_mask()")),
    }
    folder = tmp_path_factory.mktemp("submissions")
    paths = {}
    for name, notebook in notebooks.items():
        paths[name] = folder / f"{CHAPTER}_{name}.ipynb"
        nbformat.write(notebook, paths[name])
    return paths


def run(args: list[str], cwd: Path = course.REPO_ROOT, **env: str) -> subprocess.CompletedProcess:
    """Run `python -m ...` like a user would, returning its combined output in .stdout."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "COURSE_ROOT": str(course.REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def run_python():
    return run


# ---------------------------------------------------------------------------------------------
# Hostile and broken submissions for the grader (tests/test_grade.py). To keep them fast they are
# the chapter 01 exercise notebook without its demo cells (every check cell is kept, so nothing
# counts as deleted): SparseTensor is solved or wrong, the other exercises are stubs.

SPOILED_CHECKS = '''from utils.checks import check

@check
def test_sparse_tensor(SparseTensor):
    pass  # spoiled: passes everything
'''


def _cell_id(notebook: nbformat.NotebookNode, predicate) -> str:
    """The id of the first cell for which `predicate(cell)` holds (ids shift when the source grows)."""
    return next(c.id for c in notebook.cells if predicate(c))


_EXERCISE_NOTEBOOK = nbformat.read(course.exercise_notebook_path(CHAPTER), as_version=4)
SPARSE_ID = _cell_id(_EXERCISE_NOTEBOOK, lambda c: c.source.startswith("class SparseTensor"))  # its exercise cell
SPARSE_CHECK_ID = _cell_id(_EXERCISE_NOTEBOOK, lambda c: "tests.test_sparse_tensor(" in c.source)  # its check cell
IMPORTS_ID = _cell_id(_EXERCISE_NOTEBOOK, lambda c: c.cell_type == "code" and c.id != "setup")  # the chapter's imports


def _short_chapter01(sparse_tensor: str) -> nbformat.NotebookNode:
    """The exercise notebook without demo cells, with SparseTensor "solved", "wrong" or "stub"."""
    notebook = nbformat.read(course.exercise_notebook_path(CHAPTER), as_version=4)
    solved = nbformat.read(course.solution_notebook_path(CHAPTER), as_version=4)
    solution = next(c.source for c in solved.cells if c.get("id") == SPARSE_ID)
    keep = []
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and not tags and cell.id != IMPORTS_ID:
            continue  # a demo
        if cell.get("id") == SPARSE_ID and sparse_tensor != "stub":
            cell.source = solution
            if sparse_tensor == "wrong":
                cell.source = solution.replace("indices = is_nonzero.nonzero()", "indices = is_nonzero.nonzero().T")
                assert cell.source != solution
        keep.append(cell)
        if cell.get("id") == IMPORTS_ID:  # the checks are imported by a demo cell that is left out
            keep.append(nbformat.v4.new_code_cell("import tests"))
    notebook.cells = keep
    return notebook


def _insert_after(notebook, cell_id: str, *sources: str) -> nbformat.NotebookNode:
    at = next(i for i, c in enumerate(notebook.cells) if c.get("id") == cell_id) + 1
    notebook.cells[at:at] = [nbformat.v4.new_code_cell(s) for s in sources]
    return notebook


def _check_cell(notebook, exercise: str = "sparse_tensor"):
    return next(c for c in notebook.cells if f"tests.test_{exercise}(" in c.source)


def hostile_notebooks() -> dict[str, nbformat.NotebookNode | str]:
    """name -> notebook (or raw text) of every hostile or broken submission class."""
    nbs: dict[str, nbformat.NotebookNode | str] = {}
    # Forged results.
    nbs["forge_log"] = _insert_after(_short_chapter01("wrong"), SPARSE_CHECK_ID, (
        "import json, os\n"
        "for name in tests.__dict__:\n"
        "    if name.startswith('test_') and os.environ.get('COURSE_CHECK_LOG'):\n"
        "        with open(os.environ['COURSE_CHECK_LOG'], 'a') as log:\n"
        "            log.write(json.dumps({'exercise': name[5:], 'passed': True, 'status': 'passed', 'message': 'ok'}) + '\\n')"
    ))
    nbs["patch_check"] = _insert_after(_short_chapter01("wrong"), SPARSE_ID, (
        "from utils.checks import _record\n"
        "tests.test_sparse_tensor = lambda *a, **k: _record('sparse_tensor', 'passed', 'test_sparse_tensor passed')"
    ))
    nbs["patch_checks_module"] = _insert_after(_short_chapter01("wrong"), SPARSE_ID, (
        "import utils.checks as uc\n"
        "_real_record = uc._record\n"
        "uc._record = lambda exercise, status, message: _real_record(exercise, 'passed', 'passed')"
    ))
    edited = _short_chapter01("wrong")
    _check_cell(edited).source = "tests.test_sparse_tensor(tests.Reference)"
    nbs["edited_check"] = edited
    deleted = _short_chapter01("wrong")
    deleted.cells = [c for c in deleted.cells if "check" not in c.metadata.get("tags", [])]
    deleted.metadata.pop("course")
    nbs["deleted_checks"] = deleted
    imports = _short_chapter01("stub")
    next(c for c in imports.cells if c.get("id") == SPARSE_ID).source = (
        "from solutions.ch01_latent_gradients import SparseTensor"
    )
    nbs["imports_solutions"] = imports
    solution = _short_chapter01("solved")
    reference = nbformat.read(course.solution_notebook_path(CHAPTER), as_version=4)
    by_id = {c.get("id"): c for c in reference.cells}
    for cell in solution.cells:  # every exercise cell as the reference has it
        if cell.get("id") in by_id:
            cell.source = by_id[cell.get("id")].source
    solution.metadata["course"]["variant"] = "exercises"  # disguised: only the cells give it away
    nbs["solution_copy"] = solution
    patched = _short_chapter01("solved")
    exercise = next(c for c in patched.cells if c.get("id") == SPARSE_ID)
    exercise.source = exercise.source.replace("values = dense[is_nonzero]", "values = 2 * dense[is_nonzero]")
    nbs["patch_torch"] = _insert_after(patched, SPARSE_ID, (
        "import torch\n"
        "torch.isclose = lambda a, b, **kw: torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)"
    ))
    # Isolation: the first tries to spoil the checks and the folders, and leaves a process behind;
    # the second must not notice.
    nbs["a_spoiler"] = _insert_after(_short_chapter01("wrong"), SPARSE_ID, (
        "import os, subprocess, sys\n"
        "from pathlib import Path\n"
        "root = Path(os.environ['COURSE_ROOT'])\n"
        f"for path in [root / 'chapters' / '{CHAPTER}' / 'tests.py', Path.cwd() / 'planted.txt', root.parent / 'planted.txt']:\n"
        "    os.chmod(path.parent, 0o755)\n"
        f"    path.write_text({SPOILED_CHECKS!r})\n"
        "subprocess.Popen(['sleep', '313'], start_new_session=True)"
    ))
    nbs["b_victim"] = _insert_after(_short_chapter01("wrong"), IMPORTS_ID, (
        "import os\n"
        "from pathlib import Path\n"
        "root = Path(os.environ['COURSE_ROOT'])\n"
        "seen = {\n"
        "    'grader variables': [k for k in os.environ if k.startswith('GRADER_TEST') or k == 'COURSE_CHECK_LOG'],\n"
        "    'files in the working directory': os.listdir('.'),\n"
        "    'planted files': [str(p) for p in [root.parent / 'planted.txt'] if p.exists()],\n"
        "    'other chapters': sorted(set(os.listdir(root / 'chapters')) - {'" + CHAPTER + "'}),\n"
        "    'spoiled checks': 'spoiled' in (root / 'chapters' / '" + CHAPTER + "' / 'tests.py').read_text(),\n"
        "}\n"
        "assert not any(seen.values()), seen"
    ))
    # Robustness.
    nbs["kills_parent"] = _insert_after(_short_chapter01("solved"), SPARSE_CHECK_ID, (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
    ))
    malformed = _short_chapter01("solved")
    malformed.metadata["course"] = "01"
    malformed.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": 3}
    malformed.cells[2].metadata["tags"] = 5
    nbs["malformed_metadata"] = malformed
    nbs["endless_output"] = _insert_after(_short_chapter01("solved"), SPARSE_ID, "while True:\n    print('x' * 10000)")
    nbs["slow_cell"] = _insert_after(_short_chapter01("solved"), SPARSE_ID, "import time\ntime.sleep(600)")
    nbs["memory_hog"] = _insert_after(_short_chapter01("solved"), SPARSE_ID, (
        "import torch\nhog = torch.empty(5 * 2**30, dtype=torch.uint8)  # lazily mapped: harmless without a cap"
    ))
    # Wrong chapter, not a course notebook, not a notebook.
    nbs["other_chapter"] = nbformat.read(course.exercise_notebook_path("02_transcoders"), as_version=4)
    nbs["unrelated"] = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    nbs["not_json"] = '{"cells": [ this is not JSON'
    # Readable output: every check fails.
    all_failed = _short_chapter01("wrong")
    for cell in all_failed.cells:
        if "exercise" in cell.metadata.get("tags", []) and cell.get("id") != SPARSE_ID:
            cell.source = cell.source.replace("raise NotImplementedError(", "return None  # (")
    nbs["all_failed"] = all_failed
    # Reaching outside the kernel (the OS sandbox, utils/grading/kernel_sandbox.py): each prints what
    # it reached, read back through the grader's --printed text (tests/test_grade.py).
    nbs["sandbox_peek"] = _insert_after(_short_chapter01("wrong"), IMPORTS_ID, (
        "import glob, os\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "secret = 0\n"
        "for pid in pids:\n"
        "    try:\n"
        "        secret += b'GRADER_TEST_SECRET' in open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "found = [p for p in glob.glob('/tmp/pytest-of-*/**/*', recursive=True) if p.endswith(('.ipynb', '.csv', '.json'))]\n"
        f"repo = os.path.exists({str(course.REPO_ROOT)!r})\n"
        "print(f'PEEK pids={len(pids)} secret={secret} files={len(found)} repo={repo}')"
    ))
    nbs["sandbox_peers"] = _insert_after(_short_chapter01("wrong"), IMPORTS_ID, (
        "import glob, os\n"
        "from ipykernel.connect import get_connection_file\n"
        "mine = os.path.realpath(get_connection_file())\n"
        "names = ('connection', 'kernel-')  # a sandboxed kernel's file, an unsandboxed one's\n"
        "# grading folders hold the kernels' files (not the Python installation, which may also be under /tmp)\n"
        "others = [p for p in glob.glob('/tmp/course-grade-*/**/*.json', recursive=True)\n"
        "          if os.path.basename(p).startswith(names) and os.path.realpath(p) != mine]\n"
        "reached = 0\n"
        "for path in others:\n"
        "    try:\n"
        "        from jupyter_client import BlockingKernelClient\n"
        "        kc = BlockingKernelClient(connection_file=path); kc.load_connection_file(); kc.start_channels()\n"
        "        kc.wait_for_ready(timeout=3); reached += 1\n"
        "    except Exception:\n"
        "        pass\n"
        "print(f'PEERS files={len(others)} reached={reached}')"
    ))
    nbs["sandbox_killer"] = _insert_after(_short_chapter01("wrong"), IMPORTS_ID, (
        "import os, signal\n"
        "visible = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
        "sandboxed = len(visible) < 10  # outside a sandbox, as root, what follows would end every process\n"
        "try:\n"
        "    if sandboxed:\n"
        "        os.kill(-1, signal.SIGKILL)  # every process it may signal but itself and init\n"
        "    print('KILLER -1: killed some')\n"
        "except OSError as err:\n"
        "    print(f'KILLER -1: {type(err).__name__}')\n"
        "print(f'KILLER visible={len(visible)}')"
    ), (
        "for pid in visible if sandboxed else []:  # init cannot be killed from inside; the kernel can\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass"
    ))
    return nbs


@pytest.fixture(scope="session")
def hostile_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "submissions"
    folder.mkdir()
    for name, notebook in hostile_notebooks().items():
        path = folder / f"{name}.ipynb"
        if isinstance(notebook, str):
            path.write_text(notebook)
        else:
            nbformat.write(notebook, path)
    return folder


# ---------------------------------------------------------------------------------------------
# Every chapter's two notebooks, graded once per test run and shared by the tests that need an
# executed notebook: the solution runs clean (tests/test_notebooks.py), its text quotes only
# values it prints (same), the exercise notebook grades "not implemented" and the solution
# "passed" on every exercise (tests/test_grade.py). One grader run executes each notebook once.


class GradedChapter:
    def __init__(self, chapter: str, rows: dict, report: dict, printed: str, stdout: str):
        self.chapter, self.stdout = chapter, stdout
        self.stub, self.solved = rows.get("stub"), rows.get("solved")  # grades.csv rows
        self.stub_report, self.solved_report = report.get("stub"), report.get("solved")  # grades.json entries
        self.printed = printed  # what the solution notebook showed as text (the grader's --printed)


@pytest.fixture(scope="session")
def graded_course(request, tmp_path_factory):
    """`graded_course(chapter)` -> GradedChapter. On first use, grades the exercise and solution
    notebooks of every chapter that the selected tests ask for, in one `python -m utils.grade
    --jobs 2 --printed` run (so `pytest -k 03_` executes chapter 03's notebooks only)."""
    needed = sorted({item.callspec.params["chapter"] for item in request.session.items
                     if "graded_course" in getattr(item, "fixturenames", ())
                     and "chapter" in getattr(getattr(item, "callspec", None), "params", {})})
    results: dict[str, GradedChapter] = {}

    def graded(chapter: str) -> GradedChapter:
        if not results:
            root = tmp_path_factory.mktemp("graded_course")
            submissions, out = root / "submissions", root / "grades"
            for name in needed or [chapter]:
                folder = submissions / name
                folder.mkdir(parents=True)
                (folder / "stub.ipynb").write_bytes(course.exercise_notebook_path(name).read_bytes())
                (folder / "solved.ipynb").write_bytes(course.solution_notebook_path(name).read_bytes())
            result = subprocess.run(
                [sys.executable, "-m", "utils.grade", str(submissions), "--out", str(out), "--jobs", "2",
                 "--timeout", "300", "--printed", str(out / "printed")],
                cwd=course.REPO_ROOT, env={**os.environ, "COURSE_ROOT": str(course.REPO_ROOT)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600,
            )
            assert result.returncode == 0, result.stdout
            with open(out / "grades.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            report = json.loads((out / "grades.json").read_text())
            for name in needed or [chapter]:
                mine = {r["notebook"].split("/")[-1].removesuffix(".ipynb"): r for r in rows if r["notebook"].startswith(f"{name}/")}
                entries = {g["notebook"].split("/")[-1].removesuffix(".ipynb"): g for g in report if g["notebook"].startswith(f"{name}/")}
                text_file = out / "printed" / f"{name}__solved.txt"
                printed = text_file.read_text() if text_file.exists() else ""
                results[name] = GradedChapter(name, mine, entries, printed, result.stdout)
        assert chapter in results, f"{chapter} was not among the chapters graded for this run: {sorted(results)}"
        return results[chapter]

    return graded

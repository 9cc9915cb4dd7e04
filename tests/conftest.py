"""Shared fixtures: chapter checks loaded by path, and student notebooks made from chapter 01.

There is deliberately no tests/__init__.py: notebooks `import tests` to get their chapter's
checks, and a regular package named `tests` at the repository root could shadow them.
"""

from __future__ import annotations

import copy
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

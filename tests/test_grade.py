"""The grader, run as an instructor would, on submissions with known outcomes."""

import csv
import json

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

CHAPTER = "01_latent_gradients"


def grade(run_python, out, *paths, timeout=60):
    result = run_python(["-m", "utils.grade", *map(str, paths), "--out", str(out), "--timeout", str(timeout)])
    assert result.returncode == 0, result.stdout
    with open(out / "grades.csv", newline="") as f:
        rows = {row["notebook"].rsplit("/", 1)[-1]: row for row in csv.DictReader(f)}
    report = {g["notebook"].rsplit("/", 1)[-1]: g for g in json.loads((out / "grades.json").read_text())}
    return result.stdout, rows, report


def test_grading_the_chapter_01_submissions(student_notebooks, run_python, tmp_path):
    folder = student_notebooks["solved"].parent
    printed, rows, report = grade(run_python, tmp_path / "grades", folder)

    results = {name.removeprefix(f"{CHAPTER}_").removesuffix(".ipynb"): row for name, row in rows.items()}
    assert {name: (row["status"], row["sparse_tensor"], row["score"]) for name, row in results.items()} == {
        "solved": ("ok", "passed", "9/9"),
        # The demo cell after the check calls the stub: the notebook is incomplete, not broken.
        "stub": ("incomplete", "not implemented", "0/9"),
        # The later exercises use the learner's SparseTensor: some fail with it, some do not.
        "wrong": ("error", "failed", "5/9"),
        "crashing": ("error", "not run", "0/9"),
        "raising": ("error", "failed", "1/9"),
    }
    assert "sparse_tensor" in printed and "not implemented" in printed  # the table

    messages = {
        name.removeprefix(f"{CHAPTER}_").removesuffix(".ipynb"): g["exercises"]["sparse_tensor"]["message"]
        for name, g in report.items()
    }
    assert messages["solved"] == "test_sparse_tensor passed"
    assert messages["stub"].startswith("test_sparse_tensor: not implemented yet")
    assert messages["wrong"].startswith(
        "test_sparse_tensor failed: SparseTensor.from_dense(the 2×3 example): indices has shape (2, 3) "
        "but should have shape (3, 2). Hint:"
    )
    assert messages["crashing"] == (
        "its check did not run to the end (error: code cell 11 raised ZeroDivisionError: division by zero)"
    )
    # In a notebook, the learner's line is named by its cell.
    assert messages["raising"].startswith(
        "test_sparse_tensor failed: your function raised AttributeError: "
        "'Tensor' object has no attribute 'nonzero_mask' (in from_dense, Cell In["
    )
    assert messages["raising"].endswith("`is_nonzero = dense.nonzero_mask()`)")


def write_notebook(folder, name, *sources):
    path = folder / name
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return path


# A stand-in for a chapter's tests.py, found by `import tests` from the notebook's own folder.
TOY_CHECKS = """
import os, sys
sys.path.insert(0, os.environ["COURSE_ROOT"])
from utils.checks import check, expect

@check
def test_one(x):
    expect(x == 1, "x should be 1.")

@check
def test_two(x):
    expect(x == 2, "x should be 2.")

@check
def test_three(x):
    expect(x == 3, "x should be 3.")
"""


def test_one_broken_exercise_does_not_stop_the_next_and_timeouts_are_reported(tmp_path, run_python):
    (tmp_path / "tests.py").write_text(TOY_CHECKS)
    write_notebook(
        tmp_path,
        "keeps_going.ipynb",
        "import tests",
        "tests.test_one(0)",  # fails
        "tests.test_two(undefined_name)",  # the cell raises before the check runs
        "tests.test_three(3)",  # still graded
    )
    write_notebook(tmp_path, "too_slow.ipynb", "import tests", "tests.test_one(1)", "import time; time.sleep(60)", "tests.test_two(2)")

    _, rows, report = grade(run_python, tmp_path / "grades", tmp_path, timeout=10)

    assert rows["keeps_going.ipynb"] == {
        "notebook": rows["keeps_going.ipynb"]["notebook"],
        "chapter": "",
        "status": "error",
        "one": "failed",
        "two": "not run",
        "three": "passed",
        "score": "1/3",
    }
    assert report["keeps_going.ipynb"]["detail"] == "code cell 3 raised NameError: name 'undefined_name' is not defined"
    assert report["keeps_going.ipynb"]["exercises"]["one"]["message"] == "test_one failed: x should be 1."

    slow = rows["too_slow.ipynb"]
    assert (slow["status"], slow["one"], slow["two"], slow["three"]) == ("timeout", "passed", "not run", "")
    assert report["too_slow.ipynb"]["detail"] == "a cell ran longer than 10 s"

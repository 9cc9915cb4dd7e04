"""Notebooks under `pytest --nbmake`: solutions run clean; a wrong answer fails with its check's message."""

import pytest

from utils import course


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_solution_notebook_runs(chapter, run_python):
    notebook = course.solution_notebook_path(chapter).relative_to(course.REPO_ROOT)
    result = run_python(["-m", "pytest", "--nbmake", str(notebook), "-p", "no:cacheprovider"])
    assert result.returncode == 0, result.stdout


def test_nbmake_summarises_a_wrong_answer_with_the_checks_message(student_notebooks, run_python):
    # CI=true keeps pytest from cutting the summary line to the terminal's width.
    result = run_python(["-m", "pytest", "--nbmake", str(student_notebooks["wrong"]), "-p", "no:cacheprovider"], CI="true")
    assert result.returncode == 1
    summary = next(line for line in result.stdout.splitlines() if line.startswith("FAILED "))
    assert summary.endswith(
        " - ❌ test_sparse_tensor failed: SparseTensor.from_dense(the 2×3 example): indices has shape (2, 3) "
        "but should have shape (3, 2). Hint: indices should have shape (n_nonzero, k) = (3, 2), one row per "
        "nonzero entry, not one row per dimension. Did you transpose it, e.g. argwhere(...).T or "
        "torch.stack(dense.nonzero(as_tuple=True))?"
    )
    # Jupyter shows the message alone, without a traceback through our code.
    assert "Traceback" not in result.stdout and "utils/checks.py" not in result.stdout

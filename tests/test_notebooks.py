"""Notebooks under `pytest --nbmake`: solutions run clean and still print every value their text
quotes; a wrong answer fails with its check's message."""

import shutil

import nbformat
import pytest

from utils import course
from utils.text_check import stale_quotes


@pytest.fixture(scope="session")
def executed_solutions(tmp_path_factory, run_python):
    """One `pytest --nbmake` run per solution notebook, on a copy whose outputs it writes back
    (`--overwrite`), so the text check reads the outputs of that same run. Runs lazily, per chapter."""
    runs = {}

    def execute(chapter):
        if chapter not in runs:
            copy = tmp_path_factory.mktemp(chapter) / course.solution_notebook_path(chapter).name
            shutil.copy(course.solution_notebook_path(chapter), copy)
            result = run_python(["-m", "pytest", "--nbmake", "--overwrite", str(copy), "-p", "no:cacheprovider"])
            runs[chapter] = result, nbformat.read(copy, as_version=4)
        return runs[chapter]

    return execute


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_solution_notebook_runs(chapter, executed_solutions):
    result, _ = executed_solutions(chapter)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_text_quotes_only_values_the_solution_notebook_prints(chapter, executed_solutions):
    result, notebook = executed_solutions(chapter)
    if result.returncode != 0:
        pytest.skip("the solution notebook does not run (see test_the_solution_notebook_runs)")
    stale = stale_quotes(notebook)
    assert not stale, f"{len(stale)} quoted value(s) of {chapter} are stale:\n" + "\n".join(map(str, stale))


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

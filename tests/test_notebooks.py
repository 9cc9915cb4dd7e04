"""Solution notebooks run clean and still print every value their text quotes (both read from one
grader run, `graded_course` in tests/conftest.py); under `pytest --nbmake` a wrong answer fails
with its check's message."""

import nbformat
import pytest

from utils import course
from utils.text_check import stale_quotes


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_solution_notebook_runs(chapter, graded_course):
    """Executed once for the whole run by the grader (tests/conftest.py, `graded_course`): no cell
    raises, none times out, every exercise passes."""
    solved = graded_course(chapter).solved_report
    assert solved is not None, graded_course(chapter).stdout
    assert (solved["status"], solved["detail"]) == ("ok", ""), solved
    assert {e: r["result"] for e, r in solved["exercises"].items() if r["result"] != "passed"} == {}, solved


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_the_text_quotes_only_values_the_solution_notebook_prints(chapter, graded_course):
    graded = graded_course(chapter)
    if graded.solved is None or graded.solved["status"] != "ok":
        pytest.skip("the solution notebook does not run (see test_the_solution_notebook_runs)")
    assert graded.printed.strip(), "the grader's --printed run wrote no text for the solution notebook"
    notebook = nbformat.read(course.solution_notebook_path(chapter), as_version=4)
    stale = stale_quotes(notebook, graded.printed)
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

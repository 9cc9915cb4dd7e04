"""The grader, run as an instructor would, on submissions with known outcomes: honest ones of
chapter 01, and hostile or broken ones (tests/conftest.py, `hostile_notebooks`), one per class of
the ways a submission could forge or spoil a result."""

import csv
import json
from pathlib import Path

import pytest

from utils import course

CHAPTER = "01_latent_gradients"
WRONG_SPARSE_TENSOR = "test_sparse_tensor failed: SparseTensor.from_dense(the 2×3 example): indices has shape (2, 3)"


def grade(run_python, out, *paths, options=(), **env):
    result = run_python(["-m", "utils.grade", *map(str, paths), "--out", str(out), *options], **env)
    assert result.returncode == 0, result.stdout
    with open(out / "grades.csv", newline="") as f:
        rows = {row["notebook"].rsplit("/", 1)[-1].removesuffix(".ipynb"): row for row in csv.DictReader(f)}
    report = {g["notebook"].rsplit("/", 1)[-1].removesuffix(".ipynb"): g for g in json.loads((out / "grades.json").read_text())}
    return result.stdout, rows, report


def test_grading_the_chapter_01_submissions(student_notebooks, run_python, tmp_path):
    folder = student_notebooks["solved"].parent
    printed, rows, report = grade(run_python, tmp_path / "grades", folder,
                                  options=["--timeout", "120", "--jobs", "2", "--printed", str(tmp_path / "printed")])

    results = {name.removeprefix(f"{CHAPTER}_"): row for name, row in rows.items()}
    details = {name: g["detail"] for name, g in report.items()}
    assert {name: (row["status"], row["sparse_tensor"], row["score"]) for name, row in results.items()} == {
        "solved": ("ok", "passed", "9/9"),
        # The demo cell after the check calls the stub: the notebook is incomplete, not broken.
        "stub": ("incomplete", "not implemented", "0/9"),
        # The later exercises use the learner's SparseTensor: some fail with it, some do not.
        "wrong": ("error", "failed", "5/9"),
        "crashing": ("error", "not run", "0/9"),
        "raising": ("error", "failed", "1/9"),
    }, details
    assert "sparse_tensor" in printed and "todo" in printed  # the table
    # All but the stub are the solution notebook (with one edit): flagged as such.
    assert results["stub"]["review"] == ""
    for name in ("solved", "wrong", "crashing", "raising"):
        assert results[name]["review"].startswith("it is the solution notebook (its metadata says so)"), name

    messages = {name.removeprefix(f"{CHAPTER}_"): g["exercises"]["sparse_tensor"]["message"] for name, g in report.items()}
    assert messages["solved"] == "test_sparse_tensor passed"
    # --printed: what each notebook showed, as text, read by the worker (the kernel cannot write it),
    # without the grader's result markers.
    shown = {p.stem.removeprefix(f"{CHAPTER}_"): p.read_text() for p in (tmp_path / "printed").glob("*.txt")}
    assert set(shown) == set(results), sorted(shown)
    assert "✅ test_sparse_tensor passed" in shown["solved"] and "✅" not in shown["stub"]
    assert "\"sparse_tensor\"" not in "".join(shown.values())  # a marker line holds the exercise's JSON record
    assert messages["stub"].startswith("test_sparse_tensor: not implemented yet")
    assert messages["wrong"].startswith(WRONG_SPARSE_TENSOR + " but should have shape (3, 2). Hint:")
    # Cells are named as Jupyter shows them.
    assert report[f"{CHAPTER}_crashing"]["detail"].startswith("In [")
    assert report[f"{CHAPTER}_crashing"]["detail"].endswith("raised ZeroDivisionError: division by zero")
    assert messages["crashing"].startswith("its check did not run: In [")
    assert "(`tests.test_sparse_tensor(SparseTensor)`) raised NameError: name 'SparseTensor' is not defined" in messages["crashing"]
    # In a notebook, the learner's line is named by its cell.
    assert messages["raising"].startswith(
        "test_sparse_tensor failed: your function raised AttributeError: "
        "'Tensor' object has no attribute 'nonzero_mask' (in from_dense, Cell In["
    )
    assert messages["raising"].endswith("`is_nonzero = dense.nonzero_mask()`)")


# ---------------------------------------------------------------------------------------------
# Hostile and broken submissions, graded in one run (only the first exercise, to keep it short).

OPTIONS = ["--chapter", "01", "--exercises", "sparse_tensor", "--timeout", "20", "--memory-gb", "4",
           "--output-mb", "1", "--jobs", "2"]


@pytest.fixture(scope="module")
def hostile(hostile_folder, run_python, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-grades")
    # A variable of the grader's own environment, which no notebook may see.
    return grade(run_python, out, hostile_folder, options=[*OPTIONS, "--printed", str(out / "printed")],
                 GRADER_TEST_SECRET="1")


def _printed(hostile, name: str) -> str:
    stdout, rows, _ = hostile
    folder = Path(next(line for line in stdout.splitlines() if line.startswith("Details, with every message: "))
                  .removeprefix("Details, with every message: ")).parent / "printed"
    return (folder / f"{name}.txt").read_text()


def test_a_kernel_reaches_nothing_outside_its_sandbox(hostile):
    """Kernels run in bubblewrap (utils/grading/kernel_sandbox.py): a notebook sees only its own
    processes, none of the grader's environment, no submission, report or repository file, no other
    kernel; and one that kills every process it can see ends only itself."""
    from browser import need
    from utils.grading import kernel_sandbox

    why_not = kernel_sandbox.problem()
    need(why_not is None, f"no OS sandbox here: {why_not}")
    _, rows, report = hostile
    peek = next(line for line in _printed(hostile, "sandbox_peek").splitlines() if line.startswith("PEEK"))
    pids = int(peek.split()[1].removeprefix("pids="))
    assert pids <= 4 and peek.endswith("secret=0 files=0 repo=False"), peek  # the kernel, bwrap, a child or two
    assert "PEERS files=0 reached=0" in _printed(hostile, "sandbox_peers")
    # kill(-1) finds nothing to kill; killing every pid it sees ends the kernel alone
    assert "KILLER -1: ProcessLookupError\nKILLER visible=2" in _printed(hostile, "sandbox_killer")
    assert rows["sandbox_killer"]["status"] == "crashed", report["sandbox_killer"]
    assert all(row["status"] not in ("", "grader error") for row in rows.values()), rows  # the others were graded
    assert not any("without the OS sandbox" in note for g in report.values() for note in g.get("notes", []))


def test_a_directory_or_link_where_a_report_goes_is_replaced_not_fatal(tmp_path):
    """A notebook run without the sandbox can see the output folder: a directory at grades.csv (with a
    forged report inside) or a link at grades.json must neither crash the grader nor survive."""
    from utils.grading.results import Grade, write_reports

    out = tmp_path / "grades"
    (out / "grades.csv").mkdir(parents=True)
    (out / "grades.csv" / "forged.csv").write_text("notebook,status\nme,ok\n")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("untouched")
    (out / "grades.json").symlink_to(elsewhere)
    grade_ = Grade("me.ipynb", "01_latent_gradients", "failed")
    grade_.exercises = {"sparse_tensor": {"result": "failed", "message": "wrong"}}
    write_reports([grade_], out)
    assert (out / "grades.csv").is_file() and not (out / "grades.json").is_symlink()
    assert (out / "grades.csv").read_text().splitlines() == ["notebook,chapter,status,sparse_tensor,score,review",
                                                            "me.ipynb,01_latent_gradients,failed,failed,0/1,"]
    assert json.loads((out / "grades.json").read_text())[0]["status"] == "failed"
    assert elsewhere.read_text() == "untouched"
    assert sorted(p.name for p in out.iterdir()) == ["grades.csv", "grades.json"]  # no partial file left


def test_without_the_sandbox_the_grader_says_so_once_and_notes_it(student_notebooks, run_python, tmp_path):
    out = tmp_path / "grades"
    stdout, rows, report = grade(run_python, out, student_notebooks["solved"],
                                 options=["--no-sandbox", "--exercises", "sparse_tensor", "--timeout", "120"])
    warnings = [line for line in stdout.splitlines() if "without the OS sandbox" in line]
    assert warnings == ["warning: kernels run without the OS sandbox, as this user, able to see other processes "
                        "and files: --no-sandbox was given"]
    (grade_,) = report.values()
    assert (grade_["status"], grade_["exercises"]["sparse_tensor"]["result"]) == ("ok", "passed")
    assert "graded without the OS sandbox" in grade_["notes"]


def _sandboxed() -> bool:
    """Whether this machine's grader runs kernels in bubblewrap (utils/grading/kernel_sandbox.py)."""
    from utils.grading import kernel_sandbox

    return kernel_sandbox.problem() is None


def _result(row):
    return row["status"], row["sparse_tensor"]


def test_forged_results_are_not_believed(hostile):
    _, rows, report = hostile
    # Each of these would have passed with the old grader; the restored check finds the wrong answer.
    for name in ("forge_log", "patch_check", "patch_checks_module", "edited_check", "deleted_checks"):
        assert _result(rows[name]) == ("failed", "failed"), name
        assert report[name]["exercises"]["sparse_tensor"]["message"].startswith(WRONG_SPARSE_TENSOR), name
    reviews = {name: report[name]["review"] for name in report}
    assert "names the check log" in reviews["forge_log"]
    assert "changes a module or library object (`tests.test_sparse_tensor`)" in reviews["patch_check"]
    assert "changes a module or library object (`uc._record`)" in reviews["patch_checks_module"]
    assert reviews["edited_check"] == ["check cell `tests.test_sparse_tensor(SparseTensor)` was edited"]
    assert reviews["deleted_checks"] == ["check cell `tests.test_sparse_tensor(SparseTensor)` was deleted"]
    # What runs inside the kernel cannot be prevented: it passes, and is flagged.
    assert _result(rows["imports_solutions"]) == ("ok", "passed")
    assert reviews["imports_solutions"] == ["imports the reference solutions (`solutions.ch01_latent_gradients`)"]
    # Values twice too large, and torch.isclose made to say yes: the check is fooled, the scan is not.
    assert _result(rows["patch_torch"]) == ("ok", "passed")
    assert reviews["patch_torch"] == ["changes a module or library object (`torch.isclose`)"]
    assert _result(rows["solution_copy"]) == ("ok", "passed")
    assert reviews["solution_copy"] == ["9 of 9 exercise cells are (near-)identical to the reference solution"]


def test_notebooks_are_isolated(hostile):
    _, rows, report = hostile
    if _sandboxed():  # the course copy is mounted read-only: the spoiler's first write fails
        assert _result(rows["a_spoiler"]) == ("error", "failed")
        assert "raised OSError: [Errno 30] Read-only file system" in report["a_spoiler"]["detail"]
    else:  # the spoiler rewrote tests.py in its copy of the course: it was put back before the check
        assert _result(rows["a_spoiler"]) == ("failed", "failed")
        assert ("it changed course files (put back before each check): chapters/01_latent_gradients/tests.py"
                in report["a_spoiler"]["review"])
    # The next notebook sees a clean copy, an empty working folder, no other chapter and none of
    # the grader's variables (its own cell asserts so), and gets its own result.
    assert _result(rows["b_victim"]) == ("failed", "failed"), report["b_victim"]["detail"]
    # The process the spoiler left behind was ended with it.
    leftovers = [p for p in Path("/proc").glob("[0-9]*") if _read(p / "cmdline") == "sleep\x00313\x00"]
    assert [p for p in leftovers if "COURSE_GRADE_RUN=" in _read(p / "environ")] == []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_one_bad_notebook_does_not_cost_the_others(hostile, hostile_folder, run_python, tmp_path):
    _, rows, report = hostile
    assert len(rows) == len(list(hostile_folder.glob("*.ipynb")))  # every notebook has its grade
    if _sandboxed():  # a sandboxed kernel's parent is the sandbox's init, which it cannot kill
        assert _result(rows["kills_parent"]) == ("ok", "passed")
    else:  # a kernel that kills its worker: what was checked before counts
        assert _result(rows["kills_parent"]) == ("crashed", "passed")
        assert report["kills_parent"]["detail"] == "the kernel's worker process was killed"
    assert _result(rows["malformed_metadata"]) == ("ok", "passed")
    # Endless output is stopped, a slow cell interrupted, a memory hog refused; the check after runs.
    assert _result(rows["endless_output"]) == ("error", "passed")
    assert report["endless_output"]["detail"] == (
        "In [5] (`while True:`) raised OutputLimit: it printed more than 1048576 bytes and was interrupted")
    assert _result(rows["slow_cell"]) == ("timeout", "passed")
    assert report["slow_cell"]["detail"] == "In [5] (`import time`) it ran longer than 20 s and was interrupted"
    assert _result(rows["memory_hog"]) == ("error", "passed")
    assert "can't allocate memory" in report["memory_hog"]["detail"]

    # The whole notebook has a time budget too.
    _, rows, report = grade(run_python, tmp_path / "budget", hostile_folder / "slow_cell.ipynb",
                            options=["--exercises", "sparse_tensor", "--budget", "15", "--timeout", "600"])
    assert _result(rows["slow_cell"]) == ("timeout", "not run")
    assert report["slow_cell"]["detail"] == "the notebook ran longer than its budget of 15 s"


def test_notebooks_of_another_chapter_or_none_are_not_graded(hostile):
    _, rows, report = hostile
    assert {name: (rows[name]["status"], rows[name]["score"]) for name in ("other_chapter", "unrelated", "not_json")} == {
        "other_chapter": ("wrong chapter", ""),
        "unrelated": ("not a course notebook", ""),
        "not_json": ("unreadable", ""),
    }
    assert report["other_chapter"]["detail"] == "it is a notebook of chapter 02_transcoders, not 01_latent_gradients"


def test_the_report_reads_well(hostile, hostile_folder):
    printed, rows, report = hostile
    # Every check failed: not plain "ok".
    assert _result(rows["all_failed"]) == ("failed", "failed")
    assert report["all_failed"]["detail"] == "no check passed"
    table = printed.split("Chapter 01_latent_gradients\n", 1)[1].split("\n\n", 1)[0]
    assert table.splitlines()[0].split() == ["notebook", "status", "1", "score", "review"]
    row = next(line for line in table.splitlines() if line.startswith("all_failed"))
    assert row.split() == ["all_failed.ipynb", "failed", "FAIL", "0/1"]  # a short name
    assert str(hostile_folder) not in printed.split("Chapter ", 1)[1].rsplit("Details", 1)[0]
    assert "Exercises: 1 sparse_tensor" in printed
    assert "Not graded" in printed and "For review" in printed


# ---------------------------------------------------------------------------------------------
# The parts that need no kernel.


def test_odd_files_are_reported_not_fatal_and_csv_cells_stay_text(run_python, tmp_path):
    """Issue 31: a FIFO named *.ipynb hung the grader; a file name that is not UTF-8 left no
    grades.csv; a notebook named '=1+1 (formula).ipynb' reached grades.csv as a live formula.
    None of these needs a kernel: each is graded "unreadable" or "not a course notebook"."""
    import csv
    import json
    import os

    folder = tmp_path / "subs"
    folder.mkdir()
    os.mkfifo(folder / "pipe.ipynb")
    (folder / "=1+1 (formula).ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                             "nbformat_minor": 5}))
    bad_name = os.fsencode(folder) + b"/caf\xe9 \xff.ipynb"
    with open(bad_name, "w") as f:
        f.write("{}")
    out = tmp_path / "grades"
    result = run_python(["-m", "utils.grade", str(folder), "--out", str(out)])
    assert (out / "grades.csv").exists(), result.stdout[-2000:]
    rows = list(csv.reader((out / "grades.csv").open(encoding="utf-8")))
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["pipe.ipynb"][2] == "unreadable"
    assert "'=1+1 (formula).ipynb" in by_name and "=1+1 (formula).ipynb" not in by_name
    assert any(name.startswith("caf\ufffd") for name in by_name)
    assert all(not r[0].startswith(("=", "+", "-", "@")) for r in rows[1:])
    grades = json.loads((out / "grades.json").read_text())
    assert {g["status"] for g in grades} <= {"unreadable", "not a course notebook"}


def test_restoring_puts_every_check_cell_of_the_source_back_in_place():
    import nbformat
    from nbformat.v4 import new_code_cell

    from utils import course
    from utils.grading.restore import chapter_source, restore

    notebook = nbformat.read(course.exercise_notebook_path(CHAPTER), as_version=4)
    cells = notebook.cells
    next(c for c in cells if "tests.test_sparse_tensor(" in c.source).source = "tests.test_sparse_tensor(tests.Reference)"
    cells.remove(next(c for c in cells if "tests.test_latent_acts_to_logits(" in c.source))
    cells.remove(next(c for c in cells if c.get("id") == "setup"))
    cells.append(new_code_cell("tests.test_sparse_tensor(SparseTensor)", metadata={"tags": ["check"]}))  # a copy

    restored = restore(notebook, CHAPTER, "/course")
    source = chapter_source(CHAPTER)
    assert restored.notebook.cells[0].source == source.by_id()["setup"].source
    assert [names for _, names in sorted(restored.checks.items())] == [(e,) for e in source.exercises]
    assert restored.dropped == 1
    assert restored.edited == [
        "check cell `tests.test_sparse_tensor(SparseTensor)` was edited",
        "check cell `tests.test_latent_acts_to_logits(latent_acts_to_logits)` was deleted",
    ]
    source_checks = {c.source.split("(")[0].removeprefix("tests.test_"): c.source for c in source.cells
                     if c.kind == "check"}
    for index, (exercise,) in restored.checks.items():
        # Each check cell comes right after its exercise's cell (and its hints), runs the source's
        # call and prints its outcome after its own marker.
        previous = next(c for c in reversed(restored.notebook.cells[:index]) if c.cell_type == "code")  # hints skipped
        assert f"def {exercise}" in previous.source or exercise == "sparse_tensor"
        assert restored.source_of(index) == source_checks[exercise]
        assert restored.nonces[index] in restored.notebook.cells[index].source
    assert len(set(restored.nonces.values())) == len(restored.nonces)


def test_a_check_cell_copied_above_its_exercise_still_runs_after_it():
    """Issue 31: a copy of a check cell put ABOVE its exercise was kept and the real one dropped,
    so the check ran before the exercise existed and a correct exercise was graded "not run"."""
    import nbformat

    from utils import course
    from utils.grading.restore import restore

    notebook = nbformat.read(course.exercise_notebook_path(CHAPTER), as_version=4)
    cells = notebook.cells
    check = next(c for c in cells if "tests.test_latent_acts_to_logits(" in c.source)
    exercise = next(c for c in cells if "def latent_acts_to_logits" in c.source)
    cells.insert(cells.index(exercise), nbformat.from_dict(dict(check)))  # the copy, above
    restored = restore(notebook, CHAPTER, "/course")
    assert restored.dropped == 1 and restored.edited == []
    index = next(i for i, names in restored.checks.items() if names == ("latent_acts_to_logits",))
    before = "\n".join(c.source for c in restored.notebook.cells[:index])
    assert "def latent_acts_to_logits" in before
    assert sum(names == ("latent_acts_to_logits",) for names in restored.checks.values()) == 1


def test_the_review_scan_flags_reaching_around_the_checks_but_not_honest_code():
    from utils import course
    from utils.grading.restore import chapter_source
    from utils.grading.review import scan_source, similarity

    for chapter in course.chapter_names():
        for cell in chapter_source(chapter).cells:
            if cell.kind == "exercise":
                assert scan_source(cell.solution) == [], (chapter, cell.id)
                assert similarity(cell.source, cell.source, cell.solution) == 0.0  # the stub copies nothing
    assert scan_source("%time x = 1\nfrom IPython.display import display") == []
    assert scan_source(
        "!cat /etc/passwd\nimport builtins\nfrom tests import solution\nimport tests as t\nt.test_x = print\n"
        "x = In[-1]\nopen('f', 'w')"
    ) == [
        "runs a magic or shell command (`!cat /etc/passwd`)",
        "changes or reads builtins (`builtins`)",
        "uses the checks' internals (`from tests import ...`)",
        "changes a module or library object (`t.test_x`)",
        "reads the kernel's history (`In`)",
        "opens files (`open`)",
    ]
    # Patching through another name is flagged as the plain patch is (issue 31)
    for aliased in ("m = torch\nm.isclose = lambda *a, **k: True",
                    "import json\nj = json\nj.dumps = str",
                    "f = torch.testing\nf.assert_close = print",
                    "mods = [torch]\nmods[0].isclose = print",
                    "for m in (torch,):\n    m.allclose = print"):
        assert any(r.startswith("changes a module or library object") for r in scan_source(aliased)), aliased
    # ... but a tensor made by a library call is the student's own object
    assert scan_source("x = torch.zeros(3)\nx.requires_grad = True\nacts = x\nacts.grad = None") == []
    # A copy with every name changed is still a copy.
    sparse = next(c for c in chapter_source(CHAPTER).cells if c.solution and c.solution.startswith("class SparseTensor"))
    renamed = sparse.solution.replace("is_nonzero", "mask").replace("values", "vals")
    assert similarity(renamed, sparse.source, sparse.solution) > 0.9


@pytest.mark.parametrize("chapter", course.chapter_names())
def test_each_chapter_grades_its_stub_as_not_implemented_and_its_solution_as_passed(chapter, graded_course):
    """Each chapter's two notebooks as shipped, graded in the one shared run (`graded_course`): the
    exercise notebook must come out "not implemented" on every exercise (none failed or not run),
    the solution notebook "passed" on every one."""
    graded = graded_course(chapter)
    rows = {"stub": graded.stub, "solved": graded.solved}
    assert None not in rows.values(), graded.stdout
    n_checks = (course.REPO_ROOT / "chapters" / chapter / "source.py").read_text().count("# %% [check]")
    marks = {name: {k: v for k, v in row.items() if k not in ("notebook", "chapter", "status", "score", "review") and v}
             for name, row in rows.items()}
    assert len(marks["stub"]) == len(marks["solved"]) == n_checks > 0, rows
    assert set(marks["stub"].values()) == {"not implemented"}, rows["stub"]
    assert (rows["stub"]["status"], rows["stub"]["score"], rows["stub"]["review"]) == ("incomplete", f"0/{n_checks}", "")
    assert set(marks["solved"].values()) == {"passed"}, graded.solved_report
    assert (rows["solved"]["status"], rows["solved"]["score"]) == ("ok", f"{n_checks}/{n_checks}"), rows["solved"]
    assert rows["solved"]["review"].startswith("it is the solution notebook"), rows["solved"]

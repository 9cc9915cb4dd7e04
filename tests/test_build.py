"""utils.build: generated files are up to date, stubs look right, drift and bad sources are reported."""

import shutil

import nbformat
import pytest

from utils import build, colab, course

CHAPTER = "01_latent_gradients"


def test_generated_files_are_up_to_date(run_python):
    result = run_python(["-m", "utils.build", "--check"])
    assert result.returncode == 0, result.stdout


def test_check_names_every_drifted_file(tmp_path, run_python):
    # A copy of what the build reads and writes (utils' modules, not its data folders).
    for folder in ("chapters", "solutions"):
        shutil.copytree(course.REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "utils").mkdir()
    for module in course.UTILS_DIR.glob("*.py"):
        shutil.copy(module, tmp_path / "utils")
    notebook = tmp_path / "chapters" / CHAPTER / f"{CHAPTER}.ipynb"
    notebook.write_text(notebook.read_text().replace("YOUR CODE HERE", "edited by hand"))
    (tmp_path / "solutions" / f"ch{CHAPTER}.py").unlink()

    result = run_python(["-m", "utils.build", "--check"], cwd=tmp_path)
    assert result.returncode == 1
    assert f"drifted: chapters/{CHAPTER}/{CHAPTER}.ipynb" in result.stdout
    assert f"drifted: solutions/ch{CHAPTER}.py" in result.stdout
    assert f"{CHAPTER}_solutions.ipynb" not in result.stdout

    assert run_python(["-m", "utils.build"], cwd=tmp_path).returncode == 0
    assert run_python(["-m", "utils.build", "--check"], cwd=tmp_path).returncode == 0


def cells_of(path, tag):
    notebook = nbformat.read(path, as_version=4)
    return [c.source for c in notebook.cells if tag in c.metadata.get("tags", [])]


def sparse_tensor_cell(path):
    """The exercise cell of the SparseTensor pilot (the chapter has more exercises)."""
    (cell,) = [c for c in cells_of(path, "exercise") if c.startswith("class SparseTensor")]
    return cell


def test_the_exercise_notebook_stubs_only_the_learners_methods():
    exercise = sparse_tensor_cell(course.exercise_notebook_path(CHAPTER))
    assert exercise.count("# YOUR CODE HERE") == 2
    assert 'raise NotImplementedError("SparseTensor.from_dense is not implemented yet")' in exercise
    assert 'raise NotImplementedError("SparseTensor.from_sparse is not implemented yet")' in exercise
    for kept in ("def from_dense(cls, dense: Tensor)", '"""Both forms from the dense tensor.', "def values(self)"):
        assert kept in exercise
    assert "nonzero()" not in exercise and "SOLUTION" not in exercise


def test_the_solution_notebook_and_module_hold_the_solution():
    solution = sparse_tensor_cell(course.solution_notebook_path(CHAPTER))
    module = course.solution_module_path(CHAPTER).read_text()
    assert "is_nonzero.nonzero()" in solution and solution in module
    assert "SOLUTION" not in module and "import tests" not in module


def test_notebooks_start_with_the_setup_cell_and_know_their_exercises():
    for path in (course.exercise_notebook_path(CHAPTER), course.solution_notebook_path(CHAPTER)):
        notebook = nbformat.read(path, as_version=4)
        assert notebook.cells[0].source == colab.setup_cell_source(CHAPTER)
        assert colab.REPO_URL in notebook.cells[0].source
        assert notebook.metadata.course.exercises == [
            "sparse_tensor", "latent_acts_to_later_latent_acts", "latent_to_latent_gradients", "tokens_to_latent_acts",
            "token_to_latent_gradients", "latent_acts_to_logits", "latent_to_logit_gradients",
            "latent_acts_to_later_latent_acts_attn", "latent_to_latent_gradients_attn"]
        assert all(c.cell_type == "markdown" or not c.outputs for c in notebook.cells)


def test_rendering_is_deterministic():
    assert build.outputs(CHAPTER) == build.outputs(CHAPTER)


@pytest.mark.parametrize(
    "source, error",
    [
        ("# %% [exercize]\nx = 1\n", "source.py:1: unknown cell header"),
        ("# %% [exercise]\ndef f():\n    # BEGIN SOLUTION\n    return 1\n", "source.py:3: '# BEGIN SOLUTION' without an END"),
        ("# %% [exercise]\ndef f():\n    return 1\n", "source.py:1: exercise cell without a '# BEGIN SOLUTION' region"),
        ("# %%\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "source.py:1: '# BEGIN/END SOLUTION' is only allowed"),
        ("# %% [markdown]\n# Title\nnot a comment\n", "source.py:3: markdown lines must start with '#'"),
        ("# %% [check]\nprint('no check here')\n", "source.py:1: check cell without"),
    ],
)
def test_source_errors_name_the_line(tmp_path, source, error):
    path = tmp_path / "source.py"
    path.write_text(source)
    with pytest.raises(build.BuildError, match=error):
        chapter = build.parse("99_broken", path)
        for cell in chapter.cells:
            if cell.kind == "exercise":
                build.stub_code(chapter, cell)


def test_stubs_name_the_enclosing_method(tmp_path):
    path = tmp_path / "source.py"
    path.write_text(
        "# %% [exercise]\nclass A:\n    def f(self):\n        'doc'\n"
        "        # BEGIN SOLUTION\n        return 1\n        # END SOLUTION\n\n    def g(self):\n        return 2\n"
    )
    chapter = build.parse("99_demo", path)
    assert build.stub_code(chapter, chapter.cells[0]) == (
        "class A:\n    def f(self):\n        'doc'\n        # YOUR CODE HERE\n"
        '        raise NotImplementedError("A.f is not implemented yet")\n\n    def g(self):\n        return 2'
    )


def test_on_colab_the_setup_cell_stops_at_once_while_the_repository_url_is_a_placeholder(tmp_path, run_python):
    # A fake `google.colab` module makes the cell take its Colab branch; it must stop before any git clone.
    script = tmp_path / "colab_setup.py"
    script.write_text("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
                      "import subprocess\nsubprocess.run = None  # any clone attempt would crash differently\n"
                      + colab.setup_cell_source(CHAPTER))
    result = run_python([str(script)], cwd=tmp_path)
    assert colab.REPO_URL == colab.PLACEHOLDER_URL, "REPO_URL was set: replace this test by one of the real clone"
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "RuntimeError: Colab setup is not available: this copy of the course names no published repository "
        "(REPO_URL in utils/colab.py is a placeholder). Run the notebook locally, see README.md.")

"""utils.text_check and the `{{value}}` / hint conventions of utils.build, on small hand-made sources."""

import nbformat
import pytest

from utils import build
from utils.text_check import is_printed, stale_quotes


@pytest.mark.parametrize(
    "value, text, found",
    [
        ("0.73", "replacement 0.73\n", True),
        ("0.73", "(0.73)", True),
        ("0.73", "ends 0.73.", True),
        ("0.73", "10.73", False),
        ("0.73", "0.735", False),
        ("0.73", "-0.73", False),
        ("-0.73", "delta -0.73", True),
        ("L2H1", "head L2H10", False),
        ("2.589", "latent 2.589: density", True),
    ],
)
def test_a_value_is_found_only_whole(value, text, found):
    assert is_printed(value, text) is found


SOURCE = '''\
# %% [markdown]
# The score is {{0.73}} and the head is {{L2H1}}.
# %%
print("score 0.73")
# %% [exercise]
def f():
    # BEGIN SOLUTION
    return 1
    # END SOLUTION
# %% [hint]
# Return a constant.
# %% [hint]
# `return 1`
# %% [check]
tests.test_f(f)
'''


def _notebook(tmp_path, source=SOURCE):
    path = tmp_path / "source.py"
    path.write_text(source)
    chapter = build.parse("99_demo", path)
    return chapter, nbformat.reads(build.render_notebook(chapter, "solutions"), as_version=4)


def test_quoted_values_render_plain_and_are_listed(tmp_path):
    _, notebook = _notebook(tmp_path)
    markdown = notebook.cells[1]
    assert markdown.source == "The score is 0.73 and the head is L2H1."
    assert markdown.metadata["course"]["quoted"] == ["0.73", "L2H1"]


def test_stale_quotes_name_the_value_and_its_sentence(tmp_path):
    _, notebook = _notebook(tmp_path)
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="score 0.73\n")]
    (stale,) = stale_quotes(notebook)
    assert (stale.cell, stale.value) == (1, "L2H1")
    assert "The score is 0.73 and the head is L2H1" in str(stale)
    notebook.cells[2].outputs.append(nbformat.v4.new_output("display_data", data={"text/html": "<b>L2H1</b>"}))
    assert stale_quotes(notebook) == []


def test_hints_are_numbered_collapsed_blocks(tmp_path):
    _, notebook = _notebook(tmp_path)
    hints = [c for c in notebook.cells if "hint" in c.metadata.get("tags", [])]
    assert [h.cell_type for h in hints] == ["markdown", "markdown"]
    assert hints[0].source.startswith("<details><summary><b>Hint 1</b>") and "\n\nReturn a constant.\n\n</details>" in hints[0].source
    assert hints[1].source.startswith("<details><summary><b>Hint 2</b>") and "`return 1`" in hints[1].source


@pytest.mark.parametrize(
    "source, error",
    [
        ("# %%\nx = 1\n# %% [hint]\n# a hint\n", "source.py:3: a hint cell must follow an exercise"),
        ("# %% [markdown]\n# value {{}}\n", "source.py:2: empty quoted value"),
        ("# %% [markdown]\n# value {{0.7\n# 3}}\n", "source.py:2: unbalanced"),
    ],
)
def test_bad_hints_and_quotes_name_the_line(tmp_path, source, error):
    with pytest.raises(build.BuildError, match=error):
        _notebook(tmp_path, source)



def test_every_exercise_of_every_chapter_has_a_hint():
    from utils import course

    missing = [f"{name}:{cell.line_no}" for name in course.chapter_names()
               for cell in build.parse(name).cells if cell.kind == "exercise" and not build.has_hint(build.parse(name), cell)]
    assert not missing, "exercise cells without a `# %% [hint]` cell after them: " + ", ".join(missing)


def test_numbers_inside_scripts_and_styles_do_not_count_as_printed():
    html = "<div>score</div><script>var x = 0.73;</script><style>.a{width:0.5em}</style><b>L2H1</b>"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "", outputs=[nbformat.v4.new_output("display_data", data={"text/html": html})])])
    from utils.text_check import printed_text

    text = printed_text(notebook)
    assert is_printed("L2H1", text) and not is_printed("0.73", text) and not is_printed("0.5", text)

"""Generate each chapter's notebooks and solutions module from its one source file.

    python -m utils.build           # (re)write every generated file
    python -m utils.build --check   # write nothing; exit 1 naming every file that drifted

The source is `chapters/NN_name/source.py`, a Python file cut into cells by header lines:

    # %% [markdown]    markdown; every line starts with "#", which is stripped
    # %%               code shown in both notebooks (demos, plots)
    # %% [module]      code shown in both notebooks and also copied into the solutions module
                       (imports and helpers the reference code needs)
    # %% [exercise]    code the learner writes. The solution notebook and the solutions module
                       get it whole; in the exercise notebook each region between the lines
                       `# BEGIN SOLUTION` and `# END SOLUTION` becomes
                       `# YOUR CODE HERE` + `raise NotImplementedError(...)`, so signatures,
                       docstrings and any code outside the regions are kept
    # %% [solution]    code shown only in the solution notebook
    # %% [check]       code that calls `tests.test_<exercise>(...)`; the grader reads these
                       calls to know every exercise of the chapter
    # %% [hint]        markdown (lines start with "#") shown collapsed as "Hint N" in both
                       notebooks; it goes right after an exercise cell (or another hint), and
                       every exercise gets at least one. Give the idea first, then the key call.

Quoted values. In a markdown cell, a number, latent id or head that the text quotes from the
solution notebook's output is written `{{value}}`, e.g. `replacement score {{0.73}}`. It renders
as the plain value and is listed in the cell's metadata (`course.quoted`); a test executes each
solution notebook once and names every quoted value it no longer prints, so a retrained world
lists every stale sentence. Quote values exactly as they are printed.

Text before the first header is ignored. Outputs, for chapter NN_name:

    chapters/NN_name/NN_name.ipynb             exercise notebook
    chapters/NN_name/NN_name_solutions.ipynb   solution notebook
    solutions/chNN_name.py                     reference implementations

Both notebooks start with the setup cell of `utils.colab`. They are deterministic (cell ids
from the cell's position in the source, no outputs, fixed metadata), so `--check` compares bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat

from utils import course
from utils.colab import setup_cell_source

KINDS = ("markdown", "code", "module", "exercise", "solution", "check", "hint")
TEXT_KINDS = ("markdown", "hint")  # cells whose lines are markdown behind "# "
_HEADER = re.compile(r"^# %%(?: \[(?P<kind>[^\]]*)\])?\s*$")
_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
STUB_MESSAGE_END = " is not implemented yet"  # the grader recognises a stub by this ending
_CHECK_CALL = re.compile(r"\btests\.test_(?P<name>\w+)\s*\(")
_DEFINITION = re.compile(r"^(?P<indent>\s*)(?:async\s+def|def|class)\s+(?P<name>\w+)")
_QUOTED = re.compile(r"\{\{\s*(?P<value>[^{}]*?)\s*\}\}")


class BuildError(Exception):
    """A problem in a chapter source, reported as `path:line: message`."""


@dataclass
class Cell:
    kind: str
    lines: list[str]  # without the header line
    line_no: int  # of the header, 1-based
    index: int  # position among the source's cells; gives a stable cell id

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")


@dataclass
class Chapter:
    name: str
    source: Path
    cells: list[Cell]

    def error(self, line_no: int, message: str) -> BuildError:
        return BuildError(f"{self.source}:{line_no}: {message}")

    @property
    def exercises(self) -> list[str]:
        """Exercise names, from the check cells."""
        return exercises_in(c.text for c in self.cells if c.kind == "check")


def exercises_in(code: Iterable[str]) -> list[str]:
    """Names of the exercises checked by `tests.test_<name>(...)` calls in `code`, in order, once each."""
    return list(dict.fromkeys(m["name"] for text in code for m in _CHECK_CALL.finditer(text)))


# ---------------------------------------------------------------------------------------------
# Parsing


def parse(chapter_name: str, source: Path | None = None) -> Chapter:
    source = source or course.source_path(chapter_name)
    chapter = Chapter(chapter_name, source, [])
    current: Cell | None = None
    for line_no, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("# %%"):
            header = _HEADER.match(line)
            kind = (header["kind"] or "code") if header else None
            if kind not in KINDS:
                raise chapter.error(line_no, f"unknown cell header {line!r}; kinds are {', '.join(KINDS)}")
            current = Cell(kind, [], line_no, len(chapter.cells))
            chapter.cells.append(current)
        elif current is not None:
            current.lines.append(line)
    for cell in chapter.cells:
        _validate(chapter, cell)
    return chapter


def _validate(chapter: Chapter, cell: Cell) -> None:
    if not cell.text:
        raise chapter.error(cell.line_no, "empty cell")
    if cell.kind in TEXT_KINDS:
        for offset, line in enumerate(cell.lines, start=1):
            if line and not line.startswith("#"):
                raise chapter.error(cell.line_no + offset, "markdown lines must start with '#'")
    has_markers = any(_BEGIN.match(line) or _END.match(line) for line in cell.lines)
    if cell.kind == "exercise" and not has_markers:
        raise chapter.error(cell.line_no, "exercise cell without a '# BEGIN SOLUTION' region")
    if cell.kind != "exercise" and has_markers:
        raise chapter.error(cell.line_no, "'# BEGIN/END SOLUTION' is only allowed in exercise cells")
    if cell.kind == "check" and not _CHECK_CALL.search(cell.text):
        raise chapter.error(cell.line_no, "check cell without a `tests.test_<name>(...)` call")
    if cell.kind == "hint":
        previous = chapter.cells[cell.index - 1].kind if cell.index else None
        if previous not in ("exercise", "hint"):
            raise chapter.error(cell.line_no, "a hint cell must follow an exercise cell or another hint")
    if cell.kind == "markdown":
        for offset, line in enumerate(cell.lines, start=1):
            if any(not m["value"] for m in _QUOTED.finditer(line)):
                raise chapter.error(cell.line_no + offset, "empty quoted value '{{}}'")
            if "{{" in _QUOTED.sub("", line) or "}}" in _QUOTED.sub("", line):
                raise chapter.error(cell.line_no + offset, "unbalanced '{{' or '}}' (quoted values fit on one line)")


def markdown_text(cell: Cell) -> str:
    """A text cell's markdown: the "# " (or "#") prefix of every line removed."""
    return "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in cell.lines).strip("\n")


def quoted_values(cell: Cell) -> list[str]:
    """The values a markdown cell quotes from the solution notebook's output, in order, once each."""
    if cell.kind != "markdown":
        return []
    return list(dict.fromkeys(m["value"] for m in _QUOTED.finditer(markdown_text(cell))))


def has_hint(chapter: Chapter, cell: Cell) -> bool:
    """Whether an exercise cell is followed by at least one hint cell."""
    return cell.index + 1 < len(chapter.cells) and chapter.cells[cell.index + 1].kind == "hint"


def hint_number(chapter: Chapter, cell: Cell) -> int:
    """1 for the first hint after an exercise, 2 for the next, ..."""
    number = 1
    while chapter.cells[cell.index - number].kind == "hint":
        number += 1
    return number


# ---------------------------------------------------------------------------------------------
# Exercise cells: solution and stub versions


def solution_code(chapter: Chapter, cell: Cell) -> str:
    """The exercise cell with its marker lines removed."""
    _regions(chapter, cell)  # validates the markers
    return "\n".join(line for line in cell.lines if not (_BEGIN.match(line) or _END.match(line))).strip("\n")


def stub_code(chapter: Chapter, cell: Cell) -> str:
    """The exercise cell with each solution region replaced by a stub."""
    lines = list(cell.lines)
    for begin, end in reversed(_regions(chapter, cell)):
        indent = _BEGIN.match(lines[begin])["indent"]
        name = _enclosing_name(lines, begin) or "this exercise"
        lines[begin : end + 1] = [
            f"{indent}# YOUR CODE HERE",
            f'{indent}raise NotImplementedError("{name}{STUB_MESSAGE_END}")',
        ]
    return "\n".join(lines).strip("\n")


def _regions(chapter: Chapter, cell: Cell) -> list[tuple[int, int]]:
    """(begin, end) line positions of the solution regions, checked to be paired and not nested."""
    regions, begin = [], None
    for i, line in enumerate(cell.lines):
        if _BEGIN.match(line):
            if begin is not None:
                raise chapter.error(cell.line_no + 1 + i, "nested '# BEGIN SOLUTION'")
            begin = i
        elif _END.match(line):
            if begin is None:
                raise chapter.error(cell.line_no + 1 + i, "'# END SOLUTION' without a BEGIN")
            regions.append((begin, i))
            begin = None
    if begin is not None:
        raise chapter.error(cell.line_no + 1 + begin, "'# BEGIN SOLUTION' without an END")
    return regions


def _enclosing_name(lines: list[str], position: int) -> str | None:
    """Qualified name of the def (and classes) around `position`, e.g. SparseTensor.from_dense."""
    names = []
    indent = len(lines[position]) - len(lines[position].lstrip())
    for line in reversed(lines[:position]):
        match = _DEFINITION.match(line)
        if match and len(match["indent"]) < indent:
            names.append(match["name"])
            indent = len(match["indent"])
    return ".".join(reversed(names)) or None


# ---------------------------------------------------------------------------------------------
# Rendering


def rendered_markdown(chapter: Chapter, cell: Cell) -> str:
    """A markdown or hint cell as both notebooks show it: quoted values plain, hints collapsed."""
    if cell.kind == "hint":
        # Blank lines around the body let Jupyter render it as markdown inside the HTML block.
        return (f"<details><summary><b>Hint {hint_number(chapter, cell)}</b> (click to open)</summary>\n\n"
                f"{markdown_text(cell)}\n\n</details>")
    return _QUOTED.sub(lambda m: m["value"], markdown_text(cell))


def render_notebook(chapter: Chapter, variant: str) -> str:
    """The exercise ("exercises") or solution ("solutions") notebook as JSON text."""
    cells = [nbformat.v4.new_code_cell(setup_cell_source(chapter.name), id="setup", metadata={"tags": ["setup"]})]
    for cell in chapter.cells:
        if cell.kind == "solution" and variant == "exercises":
            continue
        cell_id = f"cell-{cell.index:02d}"
        tags = {"tags": [cell.kind]} if cell.kind in ("exercise", "solution", "check") else {}
        if cell.kind == "markdown":
            quoted = quoted_values(cell)
            metadata = {"course": {"quoted": quoted}} if quoted else {}
            cells.append(nbformat.v4.new_markdown_cell(rendered_markdown(chapter, cell), id=cell_id, metadata=metadata))
            continue
        if cell.kind == "hint":
            cells.append(nbformat.v4.new_markdown_cell(rendered_markdown(chapter, cell), id=cell_id, metadata={"tags": ["hint"]}))
            continue
        if cell.kind == "exercise":
            text = stub_code(chapter, cell) if variant == "exercises" else solution_code(chapter, cell)
        else:
            text = cell.text
        cells.append(nbformat.v4.new_code_cell(text, id=cell_id, metadata=tags))
    notebook = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "course": {"chapter": chapter.name, "variant": variant, "exercises": chapter.exercises},
        },
    )
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def render_module(chapter: Chapter) -> str:
    """The solutions module: the module and exercise cells, in source order."""
    parts = [
        f'"""Reference solutions for chapter {chapter.name}.\n\n'
        f"Generated by `python -m utils.build` from chapters/{chapter.name}/source.py:\n"
        'edit the source, not this file.\n"""'
    ]
    for cell in chapter.cells:
        if cell.kind == "module":
            parts.append(cell.text)
        elif cell.kind == "exercise":
            parts.append(solution_code(chapter, cell))
    text = "\n\n\n".join(parts) + "\n"
    try:
        compile(text, str(course.solution_module_path(chapter.name)), "exec")
    except SyntaxError as err:
        raise BuildError(f"{chapter.source}: the generated solutions module does not compile: {err}") from err
    return text


def outputs(chapter_name: str) -> dict[Path, str]:
    """Every generated file of a chapter and its expected content."""
    chapter = parse(chapter_name)
    for cell in chapter.cells:  # a stub must compile too: a bad indent would only show in Jupyter
        if cell.kind == "exercise":
            try:
                compile(stub_code(chapter, cell), f"{chapter.source}:{cell.line_no}", "exec")
            except SyntaxError as err:
                raise chapter.error(cell.line_no, f"the stubbed exercise does not compile: {err}") from err
    return {
        course.exercise_notebook_path(chapter_name): render_notebook(chapter, "exercises"),
        course.solution_notebook_path(chapter_name): render_notebook(chapter, "solutions"),
        course.solution_module_path(chapter_name): render_module(chapter),
    }


def expected_files() -> dict[Path, str]:
    """Every generated file of every chapter, with the content its source gives it."""
    return {path: text for chapter in course.chapter_names() for path, text in outputs(chapter).items()}


def drifted(expected: dict[Path, str]) -> list[Path]:
    """The generated files that are missing or differ from `expected`."""
    return [p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a generated file drifted")
    args = parser.parse_args(argv)
    try:
        expected = expected_files()
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale = drifted(expected)
    for path in stale:
        if args.check:
            print(f"drifted: {path.relative_to(course.REPO_ROOT)}")
        else:
            path.write_text(expected[path], encoding="utf-8")
            print(f"wrote {path.relative_to(course.REPO_ROOT)}")
    if args.check and stale:
        print("Run `python -m utils.build` and commit the result.")
        return 1
    if not stale:
        print("All generated files are up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

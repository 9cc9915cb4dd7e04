"""Recognise a submission's chapter and rebuild the notebook that is actually run.

The chapter source (`utils.build`) is the authority: the exercise list comes from its check
cells, its setup and check cells replace whatever the student's notebook holds in their place
(edited ones are put back, deleted ones re-inserted where they belong, extra ones dropped), and
every check cell is replaced by a version that loads the chapter's checks afresh from the
course files and prints its outcomes after a secret marker (see `check_cell_source`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import lru_cache

import nbformat

from utils import build, course
from utils.colab import setup_cell_source

# Share of a chapter's own markdown, setup and check cells a notebook must contain to count as
# that chapter's notebook.
MATCH_THRESHOLD = 0.3
LOCKED_KINDS = ("setup", "check")


@dataclass(frozen=True)
class SourceCell:
    id: str
    kind: str  # setup, markdown, code, module, exercise, solution, check
    source: str  # as in the exercise notebook (stubs for exercises)
    solution: str  # as in the solution notebook


@dataclass(frozen=True)
class ChapterSource:
    name: str
    cells: tuple[SourceCell, ...]
    exercises: tuple[str, ...]

    def by_id(self) -> dict[str, SourceCell]:
        return {c.id: c for c in self.cells}


@lru_cache(maxsize=None)
def chapter_source(chapter: str) -> ChapterSource:
    parsed = build.parse(chapter)
    cells = [SourceCell("setup", "setup", setup_cell_source(chapter), setup_cell_source(chapter))]
    for cell in parsed.cells:
        if cell.kind in build.TEXT_KINDS:  # markdown and hints, as the notebooks show them
            text = build.rendered_markdown(parsed, cell)
            cells.append(SourceCell(f"cell-{cell.index:02d}", "markdown", text, text))
        elif cell.kind == "exercise":
            cells.append(SourceCell(f"cell-{cell.index:02d}", "exercise", build.stub_code(parsed, cell),
                                    build.solution_code(parsed, cell)))
        else:
            cells.append(SourceCell(f"cell-{cell.index:02d}", cell.kind, cell.text, cell.text))
    return ChapterSource(chapter, tuple(cells), tuple(parsed.exercises))


def normalise(text: str) -> str:
    return " ".join(str(text).split())


def cell_tags(cell) -> list[str]:
    """A cell's tags, whatever shape its metadata has."""
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def cell_source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


# ---------------------------------------------------------------------------------------------
# Which chapter


def content_match(notebook, chapter: str) -> float:
    """Share of the chapter's markdown, setup and check cells found (same text) in the notebook."""
    wanted = {normalise(c.source) for c in chapter_source(chapter).cells if c.kind in ("markdown", *LOCKED_KINDS)}
    present = {normalise(cell_source(c)) for c in notebook.cells}
    return len(wanted & present) / len(wanted) if wanted else 0.0


def claimed_chapter(notebook, filename: str) -> str | None:
    """The chapter the notebook's metadata names, else the one its file name starts with."""
    chapters = course.chapter_names()
    meta = notebook.get("metadata", {})
    course_meta = meta.get("course") if isinstance(meta, dict) else None
    named = course_meta.get("chapter") if isinstance(course_meta, dict) else None
    if isinstance(named, str) and named in chapters:
        return named
    return next((c for c in chapters if filename.startswith(c)), None)


def recognise(notebook) -> tuple[str | None, float]:
    """(the chapter whose cells the notebook holds, share matched); None below MATCH_THRESHOLD."""
    scores = {c: content_match(notebook, c) for c in course.chapter_names()}
    best = max(scores, key=scores.get, default=None)
    if best is None or scores[best] < MATCH_THRESHOLD:
        return None, max(scores.values(), default=0.0)
    return best, scores[best]


def resolve_chapter(text: str) -> str:
    """`01`, `1` or `01_latent_gradients` -> `01_latent_gradients`."""
    chapters = course.chapter_names()
    if text in chapters:
        return text
    matches = [c for c in chapters if text.isdigit() and c.split("_", 1)[0].lstrip("0") == text.lstrip("0")]
    if len(matches) != 1:
        raise SystemExit(f"error: no chapter {text!r}; chapters are {', '.join(chapters)}")
    return matches[0]


# ---------------------------------------------------------------------------------------------
# The notebook that is run


@dataclass
class Restored:
    notebook: nbformat.NotebookNode  # what the kernel runs
    checks: dict[int, tuple[str, ...]]  # cell index -> exercises its (restored) check cell checks
    nonces: dict[int, str]  # cell index -> the marker its check cell prints before its outcomes
    student_cells: list[int]  # indices of the student's own code cells
    canonical_ids: dict[int, str]  # cell index -> id of the source cell it stands for
    edited: list[str] = field(default_factory=list)  # check cells put back: "edited" / "deleted" notes
    dropped: int = 0  # extra setup/check cells removed
    shown: dict[int, str] = field(default_factory=dict)  # check cell index -> its source as the student sees it

    def source_of(self, index: int) -> str:
        return self.shown.get(index, self.notebook.cells[index].source)


def _locked_id(cell, chapter: ChapterSource, seen_sources: dict[str, str]) -> str | None:
    """The id of the setup/check cell of the source that this student cell stands for, if any;
    "" for a setup/check cell that stands for none (a fake or a copy)."""
    by_id = chapter.by_id()
    cid = cell.get("id")
    if isinstance(cid, str) and cid in by_id and by_id[cid].kind in LOCKED_KINDS:
        return cid
    source = normalise(cell_source(cell))
    if source in seen_sources:
        return seen_sources[source]
    tags = cell_tags(cell)
    if "setup" in tags or cell_source(cell).lstrip().startswith("# Setup: run this cell first"):
        return "setup"
    if "check" in tags:
        called = build.exercises_in([cell_source(cell)])
        for c in chapter.cells:
            if c.kind == "check" and called and build.exercises_in([c.source]) == called:
                return c.id
        return ""
    return None


def restore(student, chapter_name: str, course_root: str, only: list[str] | None = None) -> Restored:
    """The notebook to run; with `only`, the check cells of other exercises are left out."""
    chapter = chapter_source(chapter_name)
    by_id = chapter.by_id()
    locked_sources = {normalise(c.source): c.id for c in chapter.cells if c.kind in LOCKED_KINDS}
    order = [c.id for c in chapter.cells]
    entries: list[tuple[str | None, object]] = []  # (source id or None, cell)
    placed: set[str] = set()
    seen_locked: set[str] = set()
    edited, dropped = [], 0
    skipped = {c.id for c in chapter.cells if c.kind == "check" and only and not set(build.exercises_in([c.source])) & set(only)}

    # Cells saved without their ids (e.g. by Colab) are recognised by their unchanged text.
    by_text = {normalise(c.source): c.id for c in chapter.cells if c.kind not in LOCKED_KINDS}

    def source_id(cell) -> str | None:
        cid = cell.get("id")
        if isinstance(cid, str) and cid in by_id:
            return cid if cid not in placed else None
        found = by_text.get(normalise(cell_source(cell)))
        return found if found not in placed else None

    earlier_of = {cid: set(order[:i]) - {cid} for i, cid in enumerate(order)}
    student_ids = []  # the chapter cell each student cell is (by id or unchanged text), or None
    for cell in student.cells:
        cid = cell.get("id")
        student_ids.append(cid if isinstance(cid, str) and cid in by_id else by_text.get(normalise(cell_source(cell))))

    def ids_below(index: int) -> set:
        return {cid for cid in student_ids[index + 1:] if cid is not None and by_id[cid].kind not in LOCKED_KINDS}

    for student_index, cell in enumerate(student.cells):
        kind = cell.get("cell_type")
        if kind == "code":
            locked = _locked_id(cell, chapter, locked_sources)
            if locked is not None:
                if locked in skipped:
                    continue
                if locked and locked not in seen_locked:
                    seen_locked.add(locked)
                    if normalise(cell_source(cell)) != normalise(by_id[locked].source) and locked != "setup":
                        edited.append(f"check cell `{_first_line(by_id[locked].source)}` was edited")
                else:
                    dropped += 1
                # A check cell runs where the student has it only if no source cell that comes before
                # it in the chapter is further down; otherwise (a copy put above its exercise used to
                # leave a correct exercise "not run", issue 31) it goes back to its place below.
                if locked and locked not in placed and not (earlier_of[locked] & ids_below(student_index)):
                    placed.add(locked)
                    entries.append((locked, None))
                continue
            cid = source_id(cell)
            entries.append((cid, nbformat.v4.new_code_cell(cell_source(cell))))
            placed.add(cid)
        elif kind == "markdown":
            cid = source_id(cell)
            entries.append((cid, nbformat.v4.new_markdown_cell(cell_source(cell))))
            placed.add(cid)

    # Insert every setup/check cell before the next source cell still in the notebook.
    for position, cid in enumerate(order):
        if by_id[cid].kind not in LOCKED_KINDS or cid in placed or cid in skipped:
            continue
        if cid != "setup" and cid not in seen_locked:
            edited.append(f"check cell `{_first_line(by_id[cid].source)}` was deleted")
        later = set(order[position + 1 :])
        at = next((i for i, (eid, _) in enumerate(entries) if eid in later), len(entries))
        if cid == "setup":
            at = 0
        entries.insert(at, (cid, None))
        placed.add(cid)
    # The setup cell always runs first.
    setup = [e for e in entries if e[0] == "setup"]
    entries = setup + [e for e in entries if e[0] != "setup"]

    cells, checks, nonces, student_cells, canonical_ids, shown = [], {}, {}, [], {}, {}
    for cid, node in entries:
        index = len(cells)
        if node is None:  # a restored setup/check cell
            source = by_id[cid].source
            if by_id[cid].kind == "check":
                checks[index] = tuple(build.exercises_in([source]))
                nonces[index] = secrets.token_hex(16)  # one per cell: known only once the cell runs
                shown[index] = source
                source = check_cell_source(chapter_name, source, nonces[index], course_root)
            node = nbformat.v4.new_code_cell(source, metadata={"tags": [by_id[cid].kind]})
        elif node.cell_type == "code" and not (cid in by_id and normalise(node.source) == normalise(by_id[cid].source)):
            student_cells.append(index)
        if cid is not None:
            canonical_ids[index] = cid
        cells.append(node)
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})
    return Restored(notebook, checks, nonces, student_cells, canonical_ids, edited, dropped, shown)


def _first_line(source: str, width: int = 60) -> str:
    line = next((l.strip() for l in source.splitlines() if l.strip() and not l.strip().startswith("#")), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def cell_name(execution_count: int | None, source: str) -> str:
    """A cell as Jupyter shows it: `In [12]` once run, else its first line."""
    if execution_count:
        return f"In [{execution_count}] (`{_first_line(source, 40)}`)"
    return f"the cell `{_first_line(source)}`"


# ---------------------------------------------------------------------------------------------
# The check cell that is run

_CHECK_CELL = '''\
# Check cell restored by the grader from chapters/{chapter}/source.py. It loads the chapter's
# checks, utils.checks and the reference solutions afresh from the course files, so that nothing
# the notebook did to them counts, and prints the outcomes after a marker only the grader knows.
def _course_check():
    import importlib.util, json, sys
    from pathlib import Path

    root, chapter, module = Path({root!r}), {chapter!r}, {module!r}
    names = ("utils.checks", "solutions", "solutions." + module, "_course_checks")
    saved = {{name: sys.modules.get(name) for name in names}}
    records = []

    def load(name, path, package=False):
        where = [str(path.parent)] if package else None
        spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=where)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        return loaded

    try:
        checks = load("utils.checks", root / "utils" / "checks.py")
        checks._record = lambda exercise, status, message: records.append([exercise, status, message])
        package = load("solutions", root / "solutions" / "__init__.py", package=True)
        setattr(package, module, load("solutions." + module, root / "solutions" / (module + ".py")))
        tests = load("_course_checks", root / "chapters" / chapter / "tests.py")
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    try:
{body}
    finally:
        sys.stdout.write("\\n" + {nonce!r} + json.dumps(records, ensure_ascii=False) + "\\n")
        sys.stdout.flush()


_course_check()'''


def check_cell_source(chapter: str, source: str, nonce: str, course_root: str) -> str:
    body = "\n".join("        " + line for line in source.splitlines())
    return _CHECK_CELL.format(chapter=chapter, root=str(course_root), module=course.solution_module_name(chapter),
                              body=body, nonce=nonce)


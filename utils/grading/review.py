"""What the grader cannot prevent, it flags for an instructor's review.

Code in the student's kernel can change anything in that process (torch, builtins, the import
machinery, the frames of a running check), so no in-process defence is complete. `scan` reads
the student's own cells (those that differ from the chapter source) without running them and
names every construct that could reach the checks, the reference solutions, the grader or other
files. `copies_solution` compares the exercise cells with the reference.
"""

from __future__ import annotations

import ast
import difflib
import math

from utils.grading.restore import ChapterSource, cell_source, cell_tags, normalise

# Magics that only time or display.
_HARMLESS_MAGICS = {"time", "timeit", "matplotlib", "load_ext", "autoreload", "config", "pprint", "precision"}
_INTROSPECTION = {"globals", "vars", "locals", "exec", "eval", "compile", "__import__", "breakpoint", "getattr"}
_DUNDERS = {"__dict__", "__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__", "__loader__",
            "__spec__", "__wrapped__", "f_globals", "f_locals", "f_back", "tb_frame", "gi_frame"}
_FILE_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "unlink", "chmod", "rmdir",
                 "mkdir", "iterdir", "rglob", "rename", "touch", "symlink_to", "hardlink_to"}
_MODULES = {  # top-level module -> why it is flagged
    "solutions": "imports the reference solutions",
    "sys": "uses sys (modules, frames, streams)",
    "builtins": "changes or reads builtins",
    "importlib": "uses the import machinery",
    "gc": "walks objects with gc",
    "inspect": "inspects frames or source",
    "ctypes": "uses ctypes",
    "os": "uses os (files, processes, environment)",
    "subprocess": "starts processes",
    "multiprocessing": "starts processes",
    "signal": "handles signals",
    "shutil": "touches files",
    "pathlib": "touches files",
    "glob": "lists files",
    "io": "opens files",
    "tempfile": "touches files",
    "socket": "opens sockets",
    "threading": "starts threads",
    "atexit": "registers exit hooks",
    "pickle": "unpickles data",
    "marshal": "loads code",
    "types": "builds functions or modules",
    "IPython": "uses IPython internals",
    "utils.checks": "imports the check framework",
    "utils.course": "imports the course's file locations",
    "utils.grade": "imports the grader",
    "utils.grading": "imports the grader",
}


def _module_reason(name: str) -> str | None:
    if name == "IPython.display" or name.startswith("IPython.display."):
        return None  # display(), HTML(), ...
    for module, why in _MODULES.items():
        if name == module or name.startswith(module + "."):
            return f"{why} (`{name}`)"
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self):
        self.reasons: list[str] = []
        self.imported: set[str] = {"tests", "torch", "utils", "solutions", "sys", "os", "builtins", "np", "numpy",
                                   "einops", "transformer_lens", "sae_lens", "IPython", "math"}

    def flag(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)

    def visit_Import(self, node):
        for alias in node.names:
            self.imported.add((alias.asname or alias.name).split(".")[0])
            if (why := _module_reason(alias.name)) is not None:
                self.flag(why)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        for alias in node.names:
            self.imported.add(alias.asname or alias.name)
        if node.level == 0 and (why := _module_reason(module)) is not None:
            self.flag(why)
        if module == "tests" and any(not a.name.startswith("test_") for a in node.names):
            self.flag("uses the checks' internals (`from tests import ...`)")
        if module == "utils" and any(a.name in ("checks", "course", "grade", "grading") for a in node.names):
            self.flag("imports the check framework (`from utils import ...`)")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in _INTROSPECTION:
            self.flag(f"uses `{node.id}`")
        elif node.id in ("In", "Out", "_ih", "_oh", "_i", "_ii", "_iii", "_dh"):
            self.flag(f"reads the kernel's history (`{node.id}`)")
        elif node.id in ("__builtins__", "get_ipython"):
            self.flag(f"uses `{node.id}`")
        elif node.id == "open":
            self.flag("opens files (`open`)")
        elif node.id in ("setattr", "delattr"):
            self.flag(f"changes attributes by name (`{node.id}`)")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        root = node
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        if node.attr in _DUNDERS:
            self.flag(f"reaches into objects (`.{node.attr}`)")
        if node.attr in _FILE_METHODS:
            self.flag(f"touches files (`.{node.attr}`)")
        if isinstance(root, ast.Name) and root.id == "tests" and isinstance(node.value, ast.Name):
            if not node.attr.startswith("test_"):
                self.flag(f"uses the checks' internals (`tests.{node.attr}`)")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and isinstance(root, ast.Name) and root.id in self.imported:
            self.flag(f"changes a module or library object (`{ast.unparse(node)}`)")
        self.generic_visit(node)

    def visit_Subscript(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = node
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.imported:
                self.flag(f"changes a module or library object (`{ast.unparse(node)}`)")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            text = node.value
            if "COURSE_CHECK_LOG" in text or "checks.jsonl" in text:
                self.flag("names the check log")
            if "/proc" in text or "solutions" in text.split("/") or "tests.py" in text:
                self.flag(f"names a protected path ({text[:40]!r})")
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        # Magics and shell escapes, as IPython rewrites them: get_ipython().run_line_magic("time", ...)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and getattr(func.value.func, "id", "") == "get_ipython":
            name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if func.attr in ("run_line_magic", "run_cell_magic") and name in _HARMLESS_MAGICS:
                self.generic_visit_args(node)
                return
            label = f"!{name}" if func.attr in ("system", "getoutput") else f"%{name}"
            self.flag(f"runs a magic or shell command (`{label}`)")
            self.generic_visit_args(node)
            return
        self.generic_visit(node)

    def generic_visit_args(self, node):
        for arg in [*node.args[1:], *node.keywords]:
            self.visit(arg)


def _python(source: str) -> str:
    """The cell as Python, with IPython's magics and `!` lines rewritten into calls."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def _aliases(tree: ast.AST, imported: set[str]) -> set[str]:
    """Names bound to a module or library object under another name (`m = torch`,
    `f = torch.isclose`, `mods = [json]`, `for m in (torch,)`): patching through them
    (`m.isclose = ...`) forged passes unflagged (issue 31). A call's result (`x = torch.zeros(3)`)
    is the student's own object, not an alias."""

    def refers(value) -> bool:
        if isinstance(value, (ast.List, ast.Tuple, ast.Set)):
            return any(refers(v) for v in value.elts)
        root = value
        while isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        return isinstance(root, ast.Name) and root.id in imported and not isinstance(value, ast.Call)

    def targets(node) -> list[str]:
        return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]

    imported = set(imported)
    while True:
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None and refers(node.value):
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    found.update(targets(t))
            elif isinstance(node, (ast.For, ast.comprehension)) and refers(node.iter):
                found.update(targets(node.target))
        if found <= imported:
            return imported
        imported |= found


def scan_source(source: str) -> list[str]:
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []
    scanner = _Scanner()
    for node in ast.walk(tree):  # imports first, so that aliases of them are known wherever they are
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                scanner.imported.add((alias.asname or alias.name).split(".")[0])
    scanner.imported = _aliases(tree, scanner.imported)
    scanner.visit(tree)
    return scanner.reasons


def scan(restored, chapter: ChapterSource) -> list[str]:
    """Reasons to review the student's own cells; constructs the chapter's own cell already has
    (e.g. a demo that calls `globals()`) do not count."""
    by_id = chapter.by_id()
    reasons: list[str] = []
    for index in restored.student_cells:
        source = restored.notebook.cells[index].source
        known = set()
        cid = restored.canonical_ids.get(index)
        if cid in by_id:
            known = set(scan_source(by_id[cid].source)) | set(scan_source(by_id[cid].solution))
        for reason in scan_source(source):
            if reason not in known and reason not in reasons:
                reasons.append(reason)
    return reasons


# ---------------------------------------------------------------------------------------------
# Copies of the reference solution


def _anonymised_lines(source: str) -> list[str]:
    """The code's statements with comments, docstrings and every name replaced in order of
    appearance, so that renaming variables does not hide a copy."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [normalise(line) for line in source.splitlines() if normalise(line)]
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body.pop(0) if len(body) > 1 else None
        if isinstance(node, ast.Name):
            node.id = names.setdefault(node.id, f"v{len(names)}")
        elif isinstance(node, ast.arg):
            node.arg = names.setdefault(node.arg, f"v{len(names)}")
    return [line.strip() for line in ast.unparse(tree).splitlines() if line.strip()]


def similarity(student: str, stub: str, solution: str) -> float:
    """How much of what the student added to the stub is the reference's own code (0..1)."""
    stub_lines = set(_anonymised_lines(stub))
    added = [l for l in _anonymised_lines(student) if l not in stub_lines]
    reference = [l for l in _anonymised_lines(solution) if l not in stub_lines]
    if not added or not reference:
        return 0.0
    return difflib.SequenceMatcher(None, added, reference, autojunk=False).ratio()


def _defined(source: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    except SyntaxError:
        return []


def copies_solution(student, chapter: ChapterSource) -> tuple[list[str], list[str]]:
    """(reasons to review, exercise cells that look copied) for a notebook that looks like the
    reference solution: the solution notebook itself, or most exercise cells near-identical."""
    by_id = chapter.by_id()
    reasons = []
    meta = student.get("metadata", {})
    course_meta = meta.get("course") if isinstance(meta, dict) else None
    if isinstance(course_meta, dict) and course_meta.get("variant") == "solutions":
        reasons.append("it is the solution notebook (its metadata says so)")
    solution_cells = [c for c in student.cells if by_id.get(c.get("id")) is not None and by_id[c.get("id")].kind == "solution"]
    if solution_cells or any("solution" in cell_tags(c) for c in student.cells):
        reasons.append("it holds the solution notebook's own cells")
    copied = []
    exercise_cells = [c for c in chapter.cells if c.kind == "exercise"]
    by_name = {name: c for c in exercise_cells for name in _defined(c.source)}
    for cell in student.cells:
        source_cell = by_id.get(cell.get("id"))
        if source_cell is None:  # saved without ids: the exercise whose function or class it defines
            source_cell = next((by_name[n] for n in _defined(cell_source(cell)) if n in by_name), None)
        if source_cell is None or source_cell.kind != "exercise" or cell.get("cell_type") != "code" or source_cell.id in copied:
            continue
        if similarity(cell_source(cell), source_cell.source, source_cell.solution) >= 0.9:
            copied.append(source_cell.id)
    if len(copied) >= max(2, math.ceil(len(exercise_cells) / 2)):
        reasons.append(f"{len(copied)} of {len(exercise_cells)} exercise cells are (near-)identical to the reference solution")
    return reasons, copied

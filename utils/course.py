"""Where the course's files live, and how to load a chapter's checks by path.

Every chapter has a folder `chapters/NN_name/` holding `source.py` (the one source of truth),
the two generated notebooks and `tests.py` (the checks). Reference implementations are generated
into `solutions/chNN_name.py`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
CHAPTERS_DIR = REPO_ROOT / "chapters"
SOLUTIONS_DIR = REPO_ROOT / "solutions"
UTILS_DIR = REPO_ROOT / "utils"


def chapter_names() -> list[str]:
    """Names of all chapter folders (those with a source.py), in order."""
    return sorted(p.parent.name for p in CHAPTERS_DIR.glob("*/source.py"))


def chapter_dir(chapter: str) -> Path:
    return CHAPTERS_DIR / chapter


def source_path(chapter: str) -> Path:
    return chapter_dir(chapter) / "source.py"


def exercise_notebook_path(chapter: str) -> Path:
    return chapter_dir(chapter) / f"{chapter}.ipynb"


def solution_notebook_path(chapter: str) -> Path:
    return chapter_dir(chapter) / f"{chapter}_solutions.ipynb"


def solution_module_name(chapter: str) -> str:
    """`01_latent_gradients` -> `ch01_latent_gradients` (a module name cannot start with a digit)."""
    return f"ch{chapter}"


def solution_module_path(chapter: str) -> Path:
    return SOLUTIONS_DIR / f"{solution_module_name(chapter)}.py"


def chapter_checks_path(chapter: str) -> Path:
    return chapter_dir(chapter) / "tests.py"


def is_chapter_checks_file(path: Path) -> bool:
    """True for `chapters/<any chapter>/tests.py`."""
    return path.name == "tests.py" and path.parent.parent == CHAPTERS_DIR


def load_checks(chapter: str) -> ModuleType:
    """Import `chapters/<chapter>/tests.py` under a unique name.

    Notebooks simply `import tests` (their chapter folder is first on sys.path). Everywhere
    else, e.g. in pytest, the bare name `tests` is ambiguous (there is also the top-level tests/
    folder and one tests.py per chapter), so we load the file by path instead.
    """
    name = f"chapter_checks_{chapter}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, chapter_checks_path(chapter))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module

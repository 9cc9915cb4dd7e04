"""The one place that says where the course repository lives, and the notebooks' setup cell.

On Colab a notebook arrives alone: nothing of this repository is importable until it has been
cloned, so the setup cell cannot import this module. Instead `python -m utils.build` renders
`setup_cell_source(chapter)` into the first cell of every notebook, with REPO_URL and REPO_REF
written in. To move the repository, change the two constants below and rebuild; CI's
`python -m utils.build --check` fails until the notebooks carry the new values.
"""

PLACEHOLDER_URL = "https://github.com/YOUR-ORG/sae-circuits-course.git"
REPO_URL = PLACEHOLDER_URL  # replace with the published repository's address; until then Colab setup stops
REPO_REF = "main"  # a branch or a tag (it is passed to `git clone --branch`)

_SETUP_CELL = '''\
# Setup: run this cell first. On Colab it downloads the course and installs its requirements
# (keeping Colab's own torch); elsewhere it only puts the repository and this chapter's folder
# on sys.path, so that `utils`, `solutions` and this chapter's `tests` can be imported.
# (Generated from utils/colab.py by `python -m utils.build`.)
import os, subprocess, sys
from pathlib import Path

CHAPTER = {chapter!r}
REPO_URL, REPO_REF = {url!r}, {ref!r}

if "google.colab" in sys.modules:
    if "YOUR-ORG" in REPO_URL:
        raise RuntimeError("Colab setup is not available: this copy of the course names no published repository "
                           "(REPO_URL in utils/colab.py is a placeholder). Run the notebook locally, see README.md.")
    root = Path("/content") / Path(REPO_URL).stem
    if not root.exists():
        subprocess.run(["git", "clone", "-q", "--depth=1", "--branch", REPO_REF, REPO_URL, str(root)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(root / "requirements.txt")], check=True)
    os.chdir(root / "chapters" / CHAPTER)
else:  # the repository around the working directory, or $COURSE_ROOT (the grader sets it)
    here = Path.cwd().resolve()
    candidates = [Path(os.environ["COURSE_ROOT"])] if os.environ.get("COURSE_ROOT") else [here, *here.parents]
    root = next((p for p in candidates if (p / "utils" / "colab.py").is_file()), None)
    if root is None:
        raise RuntimeError("Course repository not found: open this notebook inside it or set COURSE_ROOT.")
for path in (str(root), str(root / "chapters" / CHAPTER)):  # the chapter folder ends up first
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)'''


def setup_cell_source(chapter: str) -> str:
    """The self-contained first cell of `chapter`'s notebooks."""
    return _SETUP_CELL.format(chapter=chapter, url=REPO_URL, ref=REPO_REF)

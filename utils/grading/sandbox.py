"""Each notebook gets a throwaway copy of the course, a minimal environment and resource limits,
and its whole process tree is ended afterwards.

The course files are read once, when grading starts, into memory (`Snapshot`); every notebook's
copy is written from there, so nothing a notebook writes can reach the next one. The copy holds
only what a kernel needs (utils/, solutions/, and the chapter's tests.py), is made read-only,
and is compared with the snapshot after the run (and its Python files before every check cell,
see `worker`): a read-only mode does not stop a kernel running as root, but the comparison
catches what it changed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

from utils import course

_SKIP = {"__pycache__", ".ipynb_checkpoints"}


class Snapshot:
    """The course files a kernel may need, as bytes, keyed by their path in the repository."""

    def __init__(self, root: Path = course.REPO_ROOT):
        self.files: dict[str, bytes] = {}
        for top in ("utils", "solutions"):
            for path in sorted((root / top).rglob("*")):
                if path.is_file() and not _SKIP.intersection(path.relative_to(root).parts) and path.suffix != ".pyc":
                    self.files[path.relative_to(root).as_posix()] = path.read_bytes()
        for tests in sorted((root / "chapters").glob("*/tests.py")):
            self.files[tests.relative_to(root).as_posix()] = tests.read_bytes()
        self.hashes = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}

    def for_chapter(self, chapter: str) -> dict[str, bytes]:
        """Everything but the other chapters' checks."""
        return {n: d for n, d in self.files.items() if not n.startswith("chapters/") or n.startswith(f"chapters/{chapter}/")}

    def write(self, chapter: str, dest: Path) -> dict[str, bytes]:
        files = self.for_chapter(chapter)
        for name, data in files.items():
            path = dest / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        make_read_only(dest)
        return files


def make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def changed_files(root: Path, expected: dict[str, bytes]) -> list[str]:
    """Paths under `root` that differ from `expected`: changed, deleted or added (caches aside)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not _SKIP.intersection(path.relative_to(root).parts) and path.suffix != ".pyc":
            found[path.relative_to(root).as_posix()] = path
    changed = [n for n, data in expected.items() if n not in found or _digest(found[n]) != hashlib.sha256(data).hexdigest()]
    return sorted(changed + [n for n in found if n not in expected])


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def remove(root: Path) -> None:
    """Delete a throwaway folder, read-only parts included."""

    def writable_again(function, path, _):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            function(path)
        except OSError:
            pass

    shutil.rmtree(root, onerror=writable_again)


class Scratch:
    """A notebook's throwaway folders: course/ (the read-only copy), work/ (the kernel's working
    directory), home/, tmp/ and kernel/ (a sandboxed kernel's connection file and sockets)."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="course-grade-"))
        self.course, self.work, self.home, self.tmp, self.kernel = (
            self.root / n for n in ("course", "work", "home", "tmp", "kernel"))
        for folder in (self.work, self.home, self.tmp, self.kernel):
            folder.mkdir()

    def sandbox_folders(self) -> dict[str, str]:
        """The folders a sandboxed kernel sees (utils/grading/kernel_sandbox.py)."""
        return {name: str(getattr(self, name)) for name in ("course", "work", "home", "tmp", "kernel")}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        remove(self.root)


def minimal_env(scratch: Scratch, token: str, threads: int | None = None) -> dict[str, str]:
    """What a kernel needs and nothing of the grader's own environment. `threads`: the CPU threads
    each kernel's torch may use where the grader's environment does not set them (with --jobs N,
    N kernels at 2 threads each on a 2-core machine ran the suite's grading 3.6 times slower)."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(scratch.home),
        "TMPDIR": str(scratch.tmp),
        "LANG": "C.UTF-8",
        "COURSE_ROOT": str(scratch.course),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "COURSE_GRADE_RUN": token,  # lets the grader find every process of this run
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
        elif threads is not None:
            env[name] = str(threads)
    return env


def limit_resources(memory_gb: float, file_gb: float = 2.0) -> None:
    """Cap this process's data memory and the size of the files it writes (and its children's)."""
    data = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    size = int(file_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def become_subreaper() -> None:
    """Orphaned descendants (a double-forked process, a kernel whose worker died) become this
    process's children instead of init's, so that `end_tree` finds them (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _processes() -> dict[int, int]:
    """pid -> parent pid of every live process (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def _has_token(pid: int, token: str) -> bool:
    try:
        return f"COURSE_GRADE_RUN={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def end_tree(root_pid: int | None, token: str, spare: frozenset[int] = frozenset()) -> int:
    """Kill every process of one notebook's run: those carrying its token, descendants of its
    worker, and orphans adopted by this process (but not `spare`, the workers of notebooks
    still running, nor their descendants). Returns how many were killed."""
    me, killed = os.getpid(), set()
    for _ in range(50):
        parents = _processes()
        children: dict[int, list[int]] = {}
        for pid, parent in parents.items():
            children.setdefault(parent, []).append(pid)
        victims = {pid for pid in parents if pid != me and _has_token(pid, token)}
        frontier = [p for p in (root_pid, me) if p is not None]
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in victims and child != me and child not in spare:
                    victims.add(child)
                    frontier.append(child)
        victims.discard(me)
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        _reap()
        time.sleep(0.05)
    _reap()
    return len(killed)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

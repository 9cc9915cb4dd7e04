"""Time and peak memory of every solution notebook, run offline the way a learner runs it.

    python -m benchmarks.notebooks                 # every chapter
    python -m benchmarks.notebooks 01 02           # chapters whose folder name starts with these
    python -m benchmarks.notebooks --json out.json

Each notebook runs in a fresh Jupyter kernel (nbclient). Peak memory is the largest resident set
size of the kernel process and its children, sampled every 50 ms. Targets (the course design):
each solution notebook ≤ 60 s on 2 CPU cores (chapter 05: ≤ 90 s), the whole course ≤ 8 minutes,
peak ≤ 4 GB. The load average is printed first: on a busy machine the times mean little.
The repository's size (weights included, the .git folder excluded) is printed too: target ≤ 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from tabulate import tabulate

from utils import course

NOTEBOOK_SECONDS, COURSE_MINUTES, PEAK_GB, REPO_MB = 60.0, 8.0, 4.0, 100.0
SLOWER_CHAPTERS = {"05": 90.0}  # chapter prefix -> its own limit in seconds


def seconds_allowed(chapter: str) -> float:
    return next((limit for prefix, limit in SLOWER_CHAPTERS.items() if chapter.startswith(prefix)), NOTEBOOK_SECONDS)


class PeakMemory:
    """Samples the resident memory of a process's descendants (here: the kernel) in a thread."""

    def __init__(self, pid: int, every: float = 0.05):
        self.process, self.every, self.peak = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = self.process.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_notebook(path: Path, timeout: int = 600) -> dict:
    notebook = nbformat.read(path, as_version=4)
    # Offline, like CI: hub libraries must not try the network.
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COURSE_ROOT": str(course.REPO_ROOT)}
    os.environ.update(env)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    error = ""
    start = time.perf_counter()
    with PeakMemory(os.getpid()) as memory:
        try:
            client.execute()
        except Exception as exc:  # report, and go on with the next notebook
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:120]}"
    seconds = time.perf_counter() - start
    return {"notebook": str(path.relative_to(course.REPO_ROOT)), "seconds": round(seconds, 1),
            "peak_gb": round(memory.peak / 2**30, 2), "error": error}


def repository_mb() -> float:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=course.REPO_ROOT, capture_output=True, check=True).stdout
    paths = [course.REPO_ROOT / f for f in files.decode().split("\0") if f]
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter prefixes, e.g. 01 (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    chapters = [c for c in course.chapter_names() if not args.chapters or c.startswith(tuple(args.chapters))]
    print(f"{len(chapters)} notebook(s) on {psutil.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    rows = []
    for chapter in chapters:
        row = run_notebook(course.solution_notebook_path(chapter))
        row["limit"] = seconds_allowed(chapter)
        row["ok"] = not row["error"] and row["seconds"] <= row["limit"] and row["peak_gb"] <= PEAK_GB
        rows.append(row)
        print(f"  {row['notebook']}: {row['seconds']} s, {row['peak_gb']} GB {row['error']}", flush=True)
    total = sum(r["seconds"] for r in rows)
    print(tabulate([[r["notebook"], f'{r["seconds"]} (≤ {r["limit"]:.0f})', r["peak_gb"], "yes" if r["ok"] else "NO",
                     r["error"]] for r in rows],
                   headers=["solution notebook", "seconds",
                            f"peak GB (≤ {PEAK_GB})", "ok", "error"]))
    size = repository_mb()
    print(f"whole course: {total / 60:.1f} min (≤ {COURSE_MINUTES:.0f}); repository: {size:.1f} MB (≤ {REPO_MB:.0f})")
    if args.json:
        args.json.write_text(json.dumps({"notebooks": rows, "total_seconds": total, "repository_mb": size}, indent=1))
    ok = all(r["ok"] for r in rows) and total <= 60 * COURSE_MINUTES and size <= REPO_MB
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

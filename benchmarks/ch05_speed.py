"""Where chapter 05's solution notebook spends its time, section by section.

    OMP_NUM_THREADS=1 python -m benchmarks.ch05_speed          # run every cell of the source once
    OMP_NUM_THREADS=1 python -m benchmarks.ch05_speed --top 8  # also list the 8 slowest cells

Runs the code of chapters/05_understanding_latents/source.py in this process, in notebook order
(check cells included, markdown skipped), the way the solution notebook runs it, and prints the
wall time of each section (the `## N ·` headers of the text) and of the whole chapter. It is not a
kernel: `python -m benchmarks.notebooks 05` measures the notebook itself, with Jupyter's overhead
and peak memory. Target: the whole chapter ≤ 90 s on 2 CPU cores. Each section also has a budget
(BUDGET below, seconds), printed next to its time; section 2's UMAP spends most of its time
compiling numba code on first use. The load average is printed first: on a busy machine the times
mean little.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
import warnings

from tabulate import tabulate

from utils import build, course

CHAPTER = "05_understanding_latents"
_SECTION = re.compile(r"^# ## (?P<title>\d+ · .*)$", re.M)
# Budget per section, in seconds, by section number ("setup" for the cells before section 1).
BUDGET = {"setup": 10, "1": 8, "2": 25, "3": 15, "4": 15, "5": 10, "6": 5, "7": 5, "8": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=0, help="also list the N slowest cells")
    args = parser.parse_args()

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(course.chapter_dir(CHAPTER)))  # `import tests` is this chapter's checks
    chapter = build.parse(CHAPTER)
    namespace: dict = {"__name__": "__main__"}
    section, sections, cells = "setup", {}, []
    start = time.perf_counter()
    for cell in chapter.cells:
        if cell.kind in build.TEXT_KINDS:
            found = _SECTION.search("\n".join(cell.lines))
            if found:
                section = found["title"]
            continue
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.text, f"{course.source_path(CHAPTER)}:{cell.line_no}", "exec"), namespace)
        took = time.perf_counter() - began
        sections[section] = sections.get(section, 0.0) + took
        cells.append((took, f"line {cell.line_no} ({cell.kind})", section))
    total = time.perf_counter() - start
    rows = []
    for name, seconds in sections.items():
        budget = BUDGET.get(name.split(" ")[0])
        rows.append((name, f"{seconds:.1f}", budget if budget is not None else "",
                     "" if budget is None else ("ok" if seconds <= budget else "OVER")))
    rows.append(("whole chapter", f"{total:.1f}", 90, "ok" if total <= 90 else "OVER"))
    print(tabulate(rows, headers=("section", "seconds", "budget", "")))
    print(f"target: ≤ 90 s for the chapter ({'met' if total <= 90 else 'MISSED'})")
    if args.top:
        print()
        print(tabulate([(f"{t:.2f}", where, section) for t, where, section in sorted(cells, reverse=True)[: args.top]],
                       headers=("seconds", "cell", "section")))


if __name__ == "__main__":
    main()

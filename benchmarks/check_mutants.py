"""How well do the exercise checks of chapters 01 and 02 tell right from wrong?

    python -m benchmarks.check_mutants [--heldout | --heldout2 | --blind0305] [--only EXERCISE_SUBSTRING] [--json out.json] [--verbose]

Runs every check cell (as the notebook does: the cell text of chapters/NN/source.py, in a namespace
holding the solutions module with some names replaced) on the variants of tests/mutants/ch01.py
and tests/mutants/ch02.py: plausible wrong implementations, and correct alternatives the text
allows (with --heldout, those of tests/mutants/heldout.py instead: a second set, written after the
checks were fixed against the first and not used to change them; with --heldout2, those of
tests/mutants/heldout2.py: a third set, written blind, without reading the checks or the other
sets). Prints, per exercise and overall:

- caught: wrong implementations that fail their check;
- named: caught ones whose message names the mistake: a hint, a named kind of difference, or a
  specific message; not a bare "has wrong values" nor "the check raised ...";
- accepted: correct alternatives that pass;
and lists every miss, every unnamed failure, every rejected alternative, and every failure whose
message lacks the word the variant expects (`want`: the mistake it should point at).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import sys
import time
from collections import defaultdict

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from utils import build, course  # noqa: E402
from utils.checks import CheckFailed  # noqa: E402

CHAPTERS = {"01_latent_gradients": "tests.mutants.ch01", "02_transcoders": "tests.mutants.ch02"}
HELD_OUT_ATTRIBUTES = {"01_latent_gradients": "VARIANTS_CH01", "02_transcoders": "VARIANTS_CH02",
                       "03_attribution_graphs": "VARIANTS_CH03", "04_interventions": "VARIANTS_CH04",
                       "05_understanding_latents": "VARIANTS_CH05"}
# chapters 03-05 have only the blind set so far (issue 31); it is run with --blind0305
BLIND_CHAPTERS = {"03_attribution_graphs": None, "04_interventions": None, "05_understanding_latents": None}


def check_cells(chapter: str) -> dict[str, str]:
    cells = {}
    for cell in build.parse(chapter).cells:
        if cell.kind == "check":
            match = re.search(r"tests\.test_(\w+)\(", cell.text)
            if match:
                cells[match.group(1)] = cell.text
    return cells


class WorldGuard:
    """Snapshots of the modules the checks cache (models, SAEs, transcoders), put back after each variant,
    so that a variant which edits weights in place cannot spoil the next ones."""

    def __init__(self, checks):
        self.modules = []
        for name in ("_paper_world", "_course_world", "_world", "toy_model", "toy_transcoders"):
            getter = getattr(checks, name, None)
            if getter is not None:
                self._collect(getter())
        self.saved = [(m, {k: v.clone() for k, v in m.state_dict().items()}) for m in self.modules]
        # the checks' own constant tensors (hand examples), which a variant could also edit in place
        self.constants = [(v, v.clone()) for v in vars(checks).values() if isinstance(v, torch.Tensor)]

    def _collect(self, obj) -> None:
        if isinstance(obj, torch.nn.Module):
            if all(obj is not m for m in self.modules):
                self.modules.append(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                self._collect(value)
        elif isinstance(obj, (tuple, list)):
            for value in obj:
                self._collect(value)
        elif hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                self._collect(getattr(obj, name))

    def restore(self) -> None:
        with torch.no_grad():
            for module, state in self.saved:
                current = module.state_dict()
                if any(not torch.equal(current[k], v) for k, v in state.items()):
                    module.load_state_dict(state)
                if hasattr(module, "use_error_term"):
                    module.use_error_term = False
            for tensor, saved in self.constants:
                if not torch.equal(tensor, saved):
                    tensor.copy_(saved)


def run_variant(variant, namespace_base: dict, cell: str) -> tuple[str, str]:
    """('passed' | 'failed' | 'harness error', message)."""
    namespace = {**namespace_base, **variant.overrides}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), torch.no_grad():
            exec(cell, namespace)
    except CheckFailed as failure:
        return "failed", str(failure)
    except Exception as err:  # the check let an exception through: a defect of the check
        return "harness error", f"{type(err).__name__}: {err}"
    return ("passed", "") if "passed" in out.getvalue() else ("harness error", out.getvalue()[-300:])


def is_named(message: str) -> bool:
    if "Hint:" in message or "Difference:" in message:
        return True
    return "has wrong values" not in message and "the check raised" not in message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run only exercises whose name contains this")
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument("--verbose", action="store_true", help="print every message")
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--heldout", action="store_const", dest="held_out", const="tests.mutants.heldout",
                          help="run the held-out variants (tests/mutants/heldout.py)")
    held_out.add_argument("--heldout2", action="store_const", dest="held_out", const="tests.mutants.heldout2",
                          help="run the second, blind held-out set (tests/mutants/heldout2.py)")
    held_out.add_argument("--blind0305", action="store_const", dest="held_out", const="tests.mutants.blind_ch03_05",
                          help="run the blind set of chapters 03-05 (tests/mutants/blind_ch03_05.py)")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    results = []
    started = time.perf_counter()
    chapters = BLIND_CHAPTERS if args.held_out == "tests.mutants.blind_ch03_05" else CHAPTERS
    for chapter, mutants_module in chapters.items():
        checks = course.load_checks(chapter)
        solutions = importlib.import_module(f"solutions.{course.solution_module_name(chapter)}")
        base = {**vars(solutions), "tests": checks}
        cells = check_cells(chapter)
        guard = WorldGuard(checks)
        if args.held_out:
            variants = getattr(importlib.import_module(args.held_out), HELD_OUT_ATTRIBUTES[chapter])
        else:
            variants = importlib.import_module(mutants_module).VARIANTS
        for variant in variants:
            if args.only not in variant.exercise:
                continue
            t0 = time.perf_counter()
            if variant.exercise not in cells:
                status, message = "harness error", f"chapter {chapter} has no check cell for {variant.exercise!r}"
            else:
                status, message = run_variant(variant, base, cells[variant.exercise])
            guard.restore()
            results.append({"chapter": chapter, "exercise": variant.exercise, "variant": variant.name,
                            "correct": variant.correct, "status": status, "message": message, "want": variant.want,
                            "seconds": round(time.perf_counter() - t0, 2)})
            if args.verbose:
                print(f"[{status}] {variant.exercise} / {variant.name}: {message}", flush=True)

    report(results)
    print(f"\n{len(results)} variants in {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
    return 0


def report(results: list[dict]) -> None:
    by_exercise = defaultdict(list)
    for r in results:
        by_exercise[r["exercise"]].append(r)
    print(f"{'exercise':40} {'wrong':>5} {'caught':>7} {'named':>7} {'right':>6} {'accepted':>9}")
    for exercise, rows in by_exercise.items():
        w = [r for r in rows if not r["correct"]]
        c = [r for r in rows if r["correct"]]
        caught = [r for r in w if r["status"] == "failed"]
        named = [r for r in caught if is_named(r["message"])]
        accepted = [r for r in c if r["status"] == "passed"]
        print(f"{exercise:40} {len(w):5} {len(caught):7} {len(named):7} {len(c):6} {len(accepted):9}")
    w = [r for r in results if not r["correct"]]
    c = [r for r in results if r["correct"]]
    caught = [r for r in w if r["status"] == "failed"]
    named = [r for r in caught if is_named(r["message"])]
    accepted = [r for r in c if r["status"] == "passed"]
    pct = lambda a, b: f"{100 * len(a) / max(len(b), 1):.1f}%"  # noqa: E731
    print(f"\nwrong implementations caught:        {len(caught)}/{len(w)} = {pct(caught, w)}")
    print(f"caught with the mistake named:        {len(named)}/{len(caught)} = {pct(named, caught)}"
          f"  ({len(named)}/{len(w)} = {pct(named, w)} of all wrong ones)")
    print(f"correct alternatives accepted:        {len(accepted)}/{len(c)} = {pct(accepted, c)}")

    def listing(title: str, rows: list[dict]) -> None:
        if rows:
            print(f"\n{title}:")
            for r in rows:
                print(f"  - {r['exercise']} / {r['variant']}" + (f": {r['message'][:400]}" if r["message"] else ""))

    listing("MISSED (wrong but passed)", [r for r in w if r["status"] == "passed"])
    listing("CHECK DEFECT (an exception escaped the check)", [r for r in results if r["status"] == "harness error"])
    listing("CAUGHT WITHOUT NAMING THE MISTAKE", [r for r in caught if not is_named(r["message"])])
    listing("NAMED, BUT WITHOUT THE EXPECTED WORD (check the hint points at the right mistake)",
            [dict(r, variant=f"{r['variant']} [want {r['want']!r}]") for r in named
             if r["want"] and r["want"].lower() not in r["message"].lower()])
    listing("CORRECT ALTERNATIVE REJECTED", [r for r in c if r["status"] != "passed"])


if __name__ == "__main__":
    sys.exit(main())

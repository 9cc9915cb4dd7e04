"""Everything issue 11 measures about a v2 world, in one command, and shipping a run.

    python -m utils.world.v2.report [--run RUN] [--only model|dictionaries|mechanisms] [--save] [--frames]
    python -m utils.world.v2.report ship --run RUN

Without --run it reports the shipped world (utils/world/v2/artifacts). `--save` writes
bars.json, dictionary_bars.json and mechanisms.json into the run folder. `ship` copies a run's
model, tokenizer, dictionaries and saved measurements into utils/world/v2/artifacts, and refuses
a run whose saved bars do not beat v1 on every row (issue 11's landing rule); targets a run
misses are printed, not hidden.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .bars import BARS, Row, beats_v1_everywhere, format_rows
from .train import V2_ARTIFACTS

RUN_FILES = ("model.pt", "config.json", "train_info.json", "loss_history.json", "bars.json",
             "dictionary_bars.json", "mechanisms.json")


def saved_rows(run: Path) -> list[Row]:
    """The model bars a run saved (bars.json), as rows."""
    path = run / "bars.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: measure the run first (`python -m utils.world.v2.report "
                                f"--run {run} --save`)")
    values = json.loads(path.read_text())
    return [Row(bar, values[bar.key], 0) for bar in BARS if bar.key in values]


def required_dictionaries(run: Path) -> list[str]:
    """Every dictionary the chapters load (v1's specs for this run's model shape)."""
    from types import SimpleNamespace

    from ..train_dictionaries import sae_specs, transcoder_specs

    config = json.loads((run / "config.json").read_text())
    cfg = SimpleNamespace(**{k: config[k] for k in ("d_model", "n_layers", "n_heads", "d_head", "d_mlp")})
    return [spec.name for spec in (*sae_specs(cfg), *transcoder_specs(cfg))]


def ship(run: Path, dest: Path = V2_ARTIFACTS) -> list[str]:
    """Copy a measured run into the shipped artifacts; returns the files written."""
    rows = saved_rows(run)
    if not beats_v1_everywhere(rows):
        worse = [r.bar.key for r in rows if r.beats_v1 is False]
        raise ValueError(f"{run} does not beat v1 on {', '.join(worse)}; issue 11 forbids shipping it")
    missing = [f for f in RUN_FILES if not (run / f).exists()] + [d for d in ("tokenizer", "dictionaries")
                                                                    if not (run / d).is_dir()]
    if missing:
        raise FileNotFoundError(f"{run} lacks {', '.join(missing)}; train its dictionaries and measure it first")
    absent = [n for n in required_dictionaries(run) if not (run / "dictionaries" / n / "cfg.json").exists()]
    if absent:  # chapters 01 and 05 need the SAEs, 02-04 the transcoders: a partial set breaks them
        raise FileNotFoundError(f"{run}/dictionaries lacks {', '.join(absent)}; train them with "
                                f"`python -m utils.world.v2.dictionaries train --run {run}`")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(run / name, dest / name)
    shutil.copytree(run / "tokenizer", dest / "tokenizer")
    # dictionaries: sae_lens folders and their training log, no checkpoints
    shutil.copytree(run / "dictionaries", dest / "dictionaries", ignore=shutil.ignore_patterns("*checkpoint*"))
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


FRAME_KINDS = ("p2_landmark_city", "p5_scale", "p6_two_hop", "p7_ioi", "p8_closer", "p9_definition",
               "p10_first_letter", "p11_category")


def report(run: Path, only: str | None = None, save: bool = False, frames: bool = False,
           dicts: Path | None = None) -> int:
    failed = 0
    dicts = dicts or run / "dictionaries"
    if only in (None, "model"):
        from tabulate import tabulate

        from .bars import measure, per_frame_top1
        from .train import load_model

        model = load_model(run)
        rows = measure(model, n=100)
        print(format_rows(rows))
        for kind in FRAME_KINDS if frames else ():
            table = [[f"{c}/{t}", text.replace("\n", " / ")[:90], w] for text, c, t, w in per_frame_top1(model, kind)]
            print(f"\n{kind}, per held-out frame\n" + tabulate(table, headers=["top-1", "frame", "a wrong top-1"]))
        print(f"beats v1 on every row v1 was measured on: {beats_v1_everywhere(rows)}\n")
        failed += sum(r.passed is False for r in rows)
        if save:
            (run / "bars.json").write_text(json.dumps({r.bar.key: r.value for r in rows}, indent=1))
    if only in (None, "dictionaries"):
        from ..report import format_rows as format_dictionary_rows
        from .dictionaries import dictionary_rows

        rows = dictionary_rows(run, dicts)
        print(format_dictionary_rows(rows))
        bad = [r.metric for r in rows if not r.passed]
        print(f"{len(rows) - len(bad)} of {len(rows)} dictionary bars met" + (f"; failing: {', '.join(bad)}" if bad else "") + "\n")
        failed += len(bad)
        if save:
            (run / "dictionary_bars.json").write_text(json.dumps(
                [{"metric": r.metric, "value": r.value, "target": r.target, "passed": r.passed} for r in rows], indent=1))
    if only in (None, "mechanisms"):
        from .mechanisms import format_report, measure as measure_mechanisms

        result = measure_mechanisms(run, dicts)
        print(format_report(result))
        if save:
            (run / "mechanisms.json").write_text(json.dumps(result, indent=1))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.world.v2.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["report", "ship"], default="report")
    p.add_argument("--run", type=Path, default=V2_ARTIFACTS, help="a v2 run folder (default: the shipped world)")
    p.add_argument("--only", choices=["model", "dictionaries", "mechanisms"], default=None)
    p.add_argument("--save", action="store_true", help="write the measurements into the run folder")
    p.add_argument("--frames", action="store_true", help="also show top-1 per held-out frame")
    args = p.parse_args(argv)
    if args.command == "ship":
        try:
            files = ship(args.run)
        except (ValueError, FileNotFoundError) as err:
            print(f"not shipped: {err}", file=sys.stderr)
            return 1
        print(f"shipped {len(files)} files into {V2_ARTIFACTS}")
        return 0
    try:
        return report(args.run, args.only, args.save, args.frames)
    except (ValueError, FileNotFoundError) as err:  # another corpus version, a missing run or dictionary
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

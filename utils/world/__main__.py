"""Command line of the course world.

    python -m utils.world report                  what the shipped world measured (saved; no recomputation)
    python -m utils.world report --run RUN [--split test] [--only model|dictionaries|mechanisms] [--save]
                                                  measure a run now (see utils/world/report.py; also select, ship)
    python -m utils.world train-model --out DIR   train a model (utils/world/train.py)
    python -m utils.world train-dicts --run RUN --out DIR   train its SAEs and transcoders (utils/world/train_dictionaries.py)
"""

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train-model":
        from .train import main as train_main
        train_main(rest)
        return 0
    if command == "train-dicts":
        from .train_dictionaries import main as dict_main
        dict_main(rest)
        return 0
    if command == "report":
        from .report import main as report_main, show_saved
        return report_main(rest) if rest else show_saved()
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

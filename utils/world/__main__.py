"""Command line of the course world.

    python -m utils.world report                 what the shipped world v2 measured (saved; no recomputation)
    python -m utils.world report --world v1 [--json] [--only model|dictionaries]
                                                 world v1's bars, measured now (v1 goes when the chapters move)
    python -m utils.world train-model [--smoke]  (re)train the course model
    python -m utils.world train-dicts [--smoke]  (re)train the SAEs and transcoders
    python -m utils.world tokenizer              rebuild the tokenizer folder
"""

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train-model":
        from .train_model import main as train_main
        train_main(rest)
        return 0
    if command == "train-dicts":
        from .train_dictionaries import main as dict_main
        dict_main(rest)
        return 0
    if command == "tokenizer":
        from .model import TOKENIZER_DIR
        from .tokenizer import save_tokenizer
        save_tokenizer(TOKENIZER_DIR)
        print(f"tokenizer written to {TOKENIZER_DIR}")
        return 0
    if command == "report":
        if "--world" in rest:
            i = rest.index("--world")
            world, rest = (rest[i + 1] if i + 1 < len(rest) else ""), rest[:i] + rest[i + 2:]
        else:
            world = "v2"
        if world == "v1":
            from .report import main as report_main
            return report_main(rest)
        if world != "v2":
            print(f"--world takes v1 or v2, not {world!r}", file=sys.stderr)
            return 2
        from .v2 import ARTIFACTS
        from .v2.report import show_saved
        if not (ARTIFACTS / "bars_test.json").exists():
            print(f"world v2 is not shipped yet ({ARTIFACTS} has no measured run); "
                  "`python -m utils.world report --world v1` reports v1", file=sys.stderr)
            return 1
        return show_saved(ARTIFACTS)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Command line of the course world.

    python -m utils.world report [--json]        quality bars of the shipped model
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
        from .report import main as report_main
        return report_main(rest)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Grade student notebooks, one result per exercise: `python -m utils.grade PATH... --out DIR`.

The grader lives in `utils/grading/` (one job per module; the command line and its trust model
are described in `utils/grading/cli.py`). This module is the entry point.
"""

import sys

from utils.grading.cli import main

if __name__ == "__main__":
    sys.exit(main())

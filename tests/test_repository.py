"""The repository keeps its promises to newcomers: README commands, CI, pytest layout."""

import os
import re

from utils import course

README = (course.REPO_ROOT / "README.md").read_text()
CI = (course.REPO_ROOT / ".ci" / "run").read_text()


def quick_start_commands():
    """The command lines of the README's quick start block."""
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readmes_setup_and_test_commands():
    setup, test, _jupyter, _grade = quick_start_commands()
    assert setup in CI and test in CI


def test_ci_is_executable():
    assert os.access(course.REPO_ROOT / ".ci" / "run", os.X_OK)


def test_requirements_leave_torch_alone():
    requirements = (course.REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert not [line for line in requirements if re.match(r"\s*torch\b", line)]


def test_pytest_collects_only_the_tests_folder(run_python):
    result = run_python(["-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"])
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/") for line in collected)

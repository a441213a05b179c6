"""The README gives exactly two commands, and CI runs the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _readme_commands():
    section = (ROOT / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_two_commands_and_ci_runs_the_test_one():
    setup_and_run, setup_and_test = _readme_commands()
    assert "funcbp " in setup_and_run and "pytest" in setup_and_test
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_and_test in ci_lines

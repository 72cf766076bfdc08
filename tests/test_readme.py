"""The README's promises: its two fresh-machine commands exist and CI runs the test one."""

from __future__ import annotations

import re
from pathlib import Path


def _commands(repo: Path) -> list[str]:
    text = (repo / "README.md").read_text()
    head = text[: text.index("## Status")]
    return re.findall(r"```bash\n(.+?)\n```", head)


def test_readme_opens_with_the_two_commands(repo: Path) -> None:
    main_job, tests = _commands(repo)
    assert "dblink-live" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command(repo: Path) -> None:
    _, tests = _commands(repo)
    ci = (repo / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_readme_configs_exist(repo: Path) -> None:
    text = (repo / "README.md").read_text()
    for path in set(re.findall(r"configs/[\w.-]+\.yaml", text)):
        assert (repo / path).is_file(), path


def test_readme_python_examples_run(repo: Path, monkeypatch) -> None:
    monkeypatch.chdir(repo)
    text = (repo / "README.md").read_text()
    for block in re.findall(r"```python\n(.+?)\n```", text, flags=re.S):
        exec(compile(block, "README.md", "exec"), {})

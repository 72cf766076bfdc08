"""The ``isolated`` marker (tests/conftest.py): a native crash in a child fails one test with a
digest of the crash, instead of aborting the whole run; one crash is retried, with a warning."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _crash_digest

CRASHING_TESTS = """
import os
import threading
from pathlib import Path

import pytest


def _abort_in_a_thread():
    def adapter_thread():
        os.abort()  # what a C++ std::terminate in a device adapter's thread does
    t = threading.Thread(target=adapter_thread)
    t.start()
    t.join()


@pytest.mark.isolated
def test_crashes_once(tmp_path):
    flag = Path(__file__).with_name("crashed_once")
    if not flag.exists():
        flag.write_text("1")
        _abort_in_a_thread()
    assert True


@pytest.mark.isolated
def test_crashes_always():
    _abort_in_a_thread()


@pytest.mark.isolated
def test_fails_normally():
    assert 1 + 1 == 3, "an ordinary assertion"


def test_after_the_crashes():
    assert True
"""


def _run(tmp_path: Path, repo: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(repo / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_crashing.py").write_text(CRASHING_TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    isolated: in a child\n    gpu: gpu\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.timeout(300)
def test_crashes_in_isolated_tests_are_contained_and_reported(tmp_path: Path, repo: Path) -> None:
    proc = _run(tmp_path, repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # failures reported, not an aborted interpreter (-6)
    assert "PASSED test_crashing.py::test_crashes_once" in out
    assert "crashed (signal 6) and is run again" in out  # the first crash is a warning
    assert "FAILED test_crashing.py::test_crashes_always" in out
    assert "on every one of 2 runs" in out
    assert "FAILED test_crashing.py::test_fails_normally" in out
    assert "an ordinary assertion" in out
    assert "PASSED test_crashing.py::test_after_the_crashes" in out  # the run went on
    # the digest names the crash and the thread it happened in
    assert "Fatal Python error: Aborted" in out and "in adapter_thread" in out


def test_crash_digest_keeps_the_header_and_the_crashing_thread() -> None:
    output = "\n".join(
        [
            "collected 1 item",
            "terminate called after throwing an instance of 'std::runtime_error'",
            "Fatal Python error: Aborted",
            "",
            "Thread 0x01 (most recent call first):",
            '  File "idle.py", line 1 in wait',
            "",
            "Current thread 0x02 (most recent call first):",
            '  File "adapter.py", line 7 in pop',
            "",
            "Extension modules: numpy",
        ]
    )
    digest = _crash_digest(output)
    assert "terminate called" in digest and "Fatal Python error: Aborted" in digest
    assert "adapter.py" in digest and "idle.py" not in digest
    assert "Extension modules" not in digest
    # without a fatal-error header, the end of the output is what there is
    assert _crash_digest("a\nb\nc") == "a\nb\nc"

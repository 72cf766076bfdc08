"""Shared fixtures. Qt runs offscreen; GPU tests skip without CUDA; reference data may be absent.

Tests marked ``isolated`` run in a child pytest process (see :func:`pytest_pyfunc_call`): they
drive third-party native code (Micro-Manager's C++ DemoCamera adapter) whose crash would
otherwise abort the whole run with no test report. Tests marked ``napari_gui`` run in a child
too, on a virtual X display (Xvfb, Qt's xcb platform): napari's canvas needs OpenGL, which Qt's
offscreen platform does not give; without Xvfb they are skipped with the reason.
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    # DBLINK_TEST_DEVICE=cpu runs the gpu tests with the CPU standing in (checks the tests)
    has_cuda = has_cuda or os.environ.get("DBLINK_TEST_DEVICE", "cuda") == "cpu"
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


#: set in the child process that runs an ``isolated`` test
_IN_CHILD = "DBLINK_TEST_ISOLATED_CHILD"
#: a native crash (the child killed by a signal) is retried this many times, with a warning
ISOLATED_CRASH_RETRIES = 1


def _crash_digest(output: str, context_lines: int = 15) -> str:
    """The informative part of a crashed child's output: what it printed just before the fatal
    error (a C++ ``terminate`` message, for instance), the error line, and the stack of the
    thread that crashed (faulthandler's "Current thread" block)."""
    lines = output.splitlines()
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is None:
        return "\n".join(lines[-40:])
    part = lines[max(0, fatal - context_lines) : fatal + 1]
    rest = range(fatal, len(lines))
    current = next((i for i in rest if lines[i].startswith("Current thread")), None)
    if current is not None:
        end = next((i for i in range(current, len(lines)) if not lines[i].strip()), len(lines))
        part += ["...", *lines[current:end]]
    return "\n".join(part)


_DISPLAY: dict[str, str | None] = {}


def _virtual_display() -> tuple[str | None, str]:
    """``(DISPLAY, "")`` of an Xvfb server started once for this session (Qt's xcb platform
    checked on it), or ``(None, why not)``."""
    if "display" in _DISPLAY:
        return _DISPLAY["display"], _DISPLAY["why"] or ""
    display, why = None, ""
    exe = shutil.which("Xvfb")
    if exe is None:
        why = "Xvfb is not installed (apt-get install xvfb; .ci/run does)"
    else:
        proc = subprocess.Popen(
            [exe, "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(proc.terminate)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        number = proc.stdout.readline().decode().strip() if ready else ""
        if not number.isdigit():
            why = "Xvfb did not start"
        else:
            display = f":{number}"
            probe = subprocess.run(
                [sys.executable, "-c", "from qtpy.QtWidgets import QApplication; QApplication([])"],
                env={**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            if probe.returncode != 0:
                tail = (probe.stderr or probe.stdout).strip().splitlines()[-1:]
                why = "Qt's xcb platform does not start on Xvfb (missing libxcb-* libraries?): "
                why += " ".join(tail)
                display = None
    _DISPLAY.update(display=display, why=why)
    return display, why


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``isolated`` test in a child pytest process and report its outcome here.

    A failure in the child fails the test with the child's output. A child killed by a signal
    (a crash in native code) is reported as a warning with its crash digest and run again, at
    most ``ISOLATED_CRASH_RETRIES`` times; crashing every time fails the test with the digest.
    """
    gui = pyfuncitem.get_closest_marker("napari_gui") is not None
    if (pyfuncitem.get_closest_marker("isolated") is None and not gui) or os.environ.get(_IN_CHILD):
        return None
    __tracebackhide__ = True
    timeout_marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(timeout_marker.args[0]) if timeout_marker and timeout_marker.args else 300.0
    deadline = time.monotonic() + limit - 5.0  # inside this test's own pytest-timeout
    env = {**os.environ, _IN_CHILD: "1"}
    if gui:
        display, why = _virtual_display()
        if display is None:
            pytest.skip(f"no X display for napari's OpenGL canvas: {why}")
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    for attempt in range(ISOLATED_CRASH_RETRIES + 1):
        with tempfile.TemporaryDirectory(prefix="dblink-isolated-") as basetemp:
            cmd = [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q"]
            cmd += ["-p", "no:cacheprovider", "--basetemp", basetemp]
            # no warnings summary: it would push the failure itself out of the excerpt below
            cmd += ["--disable-warnings"]
            if gui:  # napari's own fixtures (make_napari_viewer), off in the main run
                cmd += ["-p", "napari.utils._testsupport"]
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=pyfuncitem.config.rootpath,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired as exc:
                partial = exc.stdout or b""
                text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
                pytest.fail(f"the child process ran past this test's {limit:.0f} s:\n{text}")
        out = proc.stdout + proc.stderr
        if proc.returncode == 0:
            return True
        if proc.returncode > 0:  # an ordinary failure (or nothing collected): report it
            pytest.fail(f"failed in its child process (exit {proc.returncode}):\n{out[-6000:]}")
        digest = _crash_digest(out)
        if attempt < ISOLATED_CRASH_RETRIES:
            warnings.warn(
                pytest.PytestWarning(
                    f"{pyfuncitem.nodeid}: the child process crashed (signal "
                    f"{-proc.returncode}) and is run again; crash digest:\n{digest}"
                ),
                stacklevel=1,
            )
    pytest.fail(
        f"the child process crashed (signal {-proc.returncode}) on every one of "
        f"{ISOLATED_CRASH_RETRIES + 1} runs; crash digest:\n{digest}"
    )


if not os.environ.get(_IN_CHILD):

    @pytest.fixture
    def make_napari_viewer() -> None:
        """Stands in for napari's fixture in the main run, where a ``napari_gui`` test only
        starts its child process (which loads napari's plugin and its real fixture)."""
        return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def repo() -> Path:
    return REPO

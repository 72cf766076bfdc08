"""Fault injection: real signals to real process groups, a real file-size limit for a full disk,
damaged chunks on disk, bad files and generated bad input.

The invariants, checked after every fault: no traceback reaches the user, the exit status is the
documented one (README, "Exit status"), the recording opens, every frame counted as written is
readable, and no map is given confidence over frames that were never localized.
``scripts/stress_faults.py`` runs the signal cases at random moments, many times.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import interruptible
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dblink_live.cli import main
from dblink_live.config import RunConfig, load_config, save_config
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording

W = 10
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
try:  # the invariants live with the stress variant, one definition for both
    from stress_faults import check_recording
finally:
    sys.path.pop(0)
_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _cmd() -> list[str]:
    exe = shutil.which("dblink-live")
    return [exe] if exe else [sys.executable, "-m", "dblink_live.cli"]


def _small_config(tmp_path: Path) -> Path:
    """A 32x32-pixel camera (128x128-bin grid): quick on 2 cores."""
    cfg = tmp_path / "small.yaml"
    small = RunConfig().updated(
        simulation={"camera": {"width_px": 32, "height_px": 32}}, live={"recon_roi": "full"}
    )
    save_config(small, cfg)
    return cfg


def _start(args: list[str], **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """A command in its own session and process group, as a terminal runs a job."""
    return subprocess.Popen(
        [*_cmd(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=interruptible,
        **kw,
    )


def _frames_on_disk(path: Path) -> int:
    try:
        return Recording.open(path).n_frames
    except DblinkError:
        return 0


def _wait_for(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.1)


# ------------------------------------------------------------------------------ signals
@pytest.mark.mm
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_process_group_drains_the_demo(tmp_path: Path, sig: int) -> None:
    """Ctrl-C in a terminal reaches the whole foreground process group (the reconstruction
    child included); SIGTERM is how schedulers and systemd stop a job. Both drain: every
    recorded frame is reconstructed, exit 0, no traceback."""
    out = tmp_path / "run.zarr"
    cfg = _small_config(tmp_path)
    proc = _start(["demo", "-n", "6000", "-c", str(cfg), "-o", str(out), "--headless",
                   "--device", "cpu", "--fps", "200"])  # fmt: skip
    try:
        _wait_for(lambda: _frames_on_disk(out) >= 200 or proc.poll() is not None)
        os.killpg(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert "stopping and draining" in stderr and "recorded" in stdout
    rec = check_recording(out)
    assert 200 <= rec.n_frames < 6000
    assert rec.meta["live_summary"]["frames_recorded"] == rec.n_frames
    assert rec.read_image("reconstruction")[0].shape[0] == rec.n_frames // W
    skel = rec.read_image("gt/skeleton")[0]
    assert skel.shape[0] == rec.n_frames // W  # the ground truth covers the whole recording


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.mm
@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the child")
def test_kill_9_keeps_frames_and_ground_truth_and_the_child_ends_quietly(tmp_path: Path) -> None:
    """A demo killed with SIGKILL: its frames and the true emitters of whole blocks survive,
    the orphaned reconstruction child ends without a word, and the recording can be scored
    and reprocessed."""
    out = tmp_path / "killed.zarr"
    cfg = _small_config(tmp_path)
    proc = _start(["demo", "-n", "6000", "-c", str(cfg), "-o", str(out), "--headless",
                   "--device", "cpu", "--fps", "200"])  # fmt: skip

    def truth_written() -> bool:
        try:
            g = Recording.open(out).group
            return "gt/emitters" in g and g["gt/emitters"].attrs.get("frames_covered", 0) > 0
        except (DblinkError, KeyError):
            return proc.poll() is not None

    try:
        _wait_for(truth_written, 180)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for(lambda: not any(_alive(c) for c in children), 30)  # the orphan ends itself
        _, stderr = proc.communicate(timeout=30)  # EOF once the child closed it too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert children, "the reconstruction child was not found"
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    rec = check_recording(out)
    covered = int(rec.group["gt/emitters"].attrs["frames_covered"])
    assert 0 < covered <= rec.n_frames
    assert int(rec.read_emitters().frame.max()) < covered
    # the maps are drawn at the end of a run (they cost the live path CPU): evaluate redraws
    # them from the stored simulation, checked against the emitters the run kept
    assert rec.read_image("gt/skeleton") is None
    if rec.read_image("reconstruction") is not None and len(rec.read_image("reconstruction")[0]):
        report = tmp_path / "killed_eval.json"
        assert main(["evaluate", str(out), "-o", str(report), "--figure",
                     str(tmp_path / "killed_eval.png")]) == 0  # fmt: skip
    # a killed run's recording is reprocessed from what it holds, frames never localized first
    r = subprocess.run([*_cmd(), "reprocess", str(out), "--device", "cpu", "--overwrite", "-q"],
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = check_recording(out)
    assert rec.unlocalized_frames() == []


@pytest.mark.timeout(300)
def test_sigterm_during_reprocess_keeps_the_old_reconstruction_and_exits_143(
    tmp_path: Path,
) -> None:
    rec_path = tmp_path / "sim.zarr"
    assert main(["simulate", "-n", "1500", "-o", str(rec_path), "-q"]) == 0
    assert (
        main(["reprocess", str(rec_path), "-q", "--device", "cpu", "--localizer", "classic"]) == 0
    )
    before, _ = Recording.open(rec_path).read_image("reconstruction")
    proc = _start(["reprocess", str(rec_path), "--overwrite", "--device", "cpu", "--stride", "1"])
    staged = rec_path / "reconstruction.partial"
    _wait_for(lambda: staged.exists() or proc.poll() is not None)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    flat = " ".join(err.split())
    assert "the previous reconstruction is kept" in flat and "interrupted by SIGTERM" in flat
    assert "Traceback" not in err
    after, _ = check_recording(rec_path).read_image("reconstruction")
    np.testing.assert_array_equal(before, after)
    assert not staged.exists()


# ------------------------------------------------------------------------------ disk full
def _file_size_limit(limit: int):  # type: ignore[no-untyped-def]
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_a_full_disk_stops_the_live_run_with_one_line(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes the recorder's writes fail as a full disk does:
    the run stops at once with one line, exit 2, and the recording opens with what it holds."""
    out = tmp_path / "full.zarr"
    cfg = _small_config(tmp_path)
    r = subprocess.run(
        [*_cmd(), "demo", "-n", "3000", "-c", str(cfg), "-o", str(out), "--headless",
         "--device", "cpu", "--fps", "200"],
        capture_output=True, text=True, timeout=200, preexec_fn=_file_size_limit(30_000),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "writing the recording failed (File too large): the run stopped" in " ".join(
        r.stderr.split()
    )
    rec = check_recording(out)
    assert rec.n_frames < 3000


def test_a_full_disk_during_simulate_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "sim.zarr"
    r = subprocess.run(
        [*_cmd(), "simulate", "-n", "300", "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=200, preexec_fn=_file_size_limit(30_000),
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "could not write" in r.stderr
    check_recording(out)


# ------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "-n", "20", "-o", "{out}", "-q"],
        ["localize", "{rec}", "-o", "{out}"],
        ["reprocess", "{rec}", "-o", "{out}"],
        ["evaluate", "{rec}", "-o", "{out}"],
        ["demo", "-n", "20", "-o", "{out}", "--headless"],
        ["replay", "{rec}", "-o", "{out}", "--headless"],
    ],
    ids=lambda a: a[0],
)
@pytest.mark.parametrize("where", ["under_a_file", "missing_folder"])
def test_an_output_that_cannot_be_created_is_one_line_before_any_work(
    tmp_path: Path, args: list[str], where: str, capsys, small_rec: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "x.zarr" if where == "under_a_file" else tmp_path / "no" / "such" / "x.zarr"
    if args[0] == "evaluate":
        out = out.with_suffix(".json")
    argv = [a.format(out=out, rec=small_rec) for a in args]
    t0 = time.monotonic()
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot write" in err and ("is a file" in err or "does not exist" in err), err
    assert time.monotonic() - t0 < 30  # refused before the work
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["simulate", "-n", "20", "-o", str(ro / "x.zarr"), "-q"]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------------------ damaged chunks
@pytest.fixture(scope="module")
def small_rec(tmp_path_factory) -> Path:
    """A 300-frame simulation (chunks of 64 frames)."""
    p = tmp_path_factory.mktemp("faults") / "sim.zarr"
    assert main(["simulate", "-n", "300", "-o", str(p), "-q"]) == 0
    return p


def _damaged_copy(src: Path, dst: Path, chunk: int, how: str) -> Path:
    shutil.copytree(src, dst)
    f = dst / "raw" / "0" / "c" / str(chunk) / "0" / "0"
    data = f.read_bytes()
    if how == "truncated":
        f.write_bytes(data[: len(data) // 3])
    else:  # bytes flipped inside the compressed stream
        b = bytearray(data)
        for i in range(16, min(len(b), 400)):
            b[i] ^= 0x5A
        f.write_bytes(bytes(b))
    return dst


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_a_damaged_chunk_in_the_middle_is_named_skipped_and_gets_no_confidence(
    small_rec: Path, tmp_path: Path, how: str, capsys
) -> None:
    rec_path = _damaged_copy(small_rec, tmp_path / "bad.zarr", 1, how)  # frames 64-127
    assert Recording.open(rec_path).n_frames == 300  # not the last chunk: still counted
    assert main(["info", str(rec_path)]) == 0
    capsys.readouterr()
    assert main(["info", str(rec_path), "--verify"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "raw frames 64-127 (64 frames) are unreadable" in err
    assert main(["localize", str(rec_path), "--localizer", "classic"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "raw frames 64-127 (64 frames) are unreadable" in err and "Traceback" not in err
    rec = Recording.open(rec_path)
    assert rec.unlocalized_frames() == [(64, 128)]
    assert rec.localization_info()["unreadable_frames"] == [[64, 128]]
    assert main(["reprocess", str(rec_path), "--device", "cpu", "--localizer", "classic"]) == 0
    conf, attrs = Recording.open(rec_path).read_image("confidence")
    over = [k for k in range(len(conf)) if k * W < 128 and k * W + W > 64]
    assert all(conf[k].max() == 0 for k in over)
    assert all(conf[k].max() > 0 for k in range(len(conf)) if k not in over)
    assert attrs["frames_without_input"] == [[64, 128]]
    out = tmp_path / "replayed.zarr"
    assert main(["replay", str(rec_path), "-o", str(out), "--headless", "--speed", "0"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "raw frames 64-127" in err and "Traceback" not in err
    check_recording(out)


# ------------------------------------------------------------------------------ bad files
def test_a_config_that_is_not_text_is_one_line(tmp_path: Path, capsys) -> None:
    png = tmp_path / "picture.yaml"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert main(["simulate", "-c", str(png), "-n", "10", "-o", str(tmp_path / "x.zarr")]) == 2
    err = capsys.readouterr().err
    assert "is not a text (YAML) config file" in err and "Traceback" not in err


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400) | st.text(max_size=300))
def test_generated_config_files_load_or_give_a_config_error(tmp_path: Path, content) -> None:  # type: ignore[no-untyped-def]
    from dblink_live.errors import ConfigError

    f = tmp_path / "gen.yaml"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content, encoding="utf-8")
    try:
        cfg = load_config(f)
    except ConfigError as exc:
        assert str(f) in str(exc)  # it names the file
        return
    assert isinstance(cfg, RunConfig)


_YAML_VALUES = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
    st.none(), st.lists(st.integers(-5, 5), max_size=3),
)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["simulation", "grid", "localizer", "live", "recon_training", "bogus"]),
        st.dictionaries(
            st.sampled_from(["n_frames", "bin_nm", "window_frames", "kind", "camera", "steps",
                             "frames", "delay_maps", "seed"]),
            _YAML_VALUES, max_size=3,
        ),
        max_size=3,
    )
)  # fmt: skip
def test_generated_configs_validate_or_say_which_key(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from dblink_live.errors import ConfigError

    f = tmp_path / "gen.yaml"
    f.write_text(yaml.safe_dump(data))
    try:
        load_config(f)
    except ConfigError as exc:
        assert str(f) in str(exc)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(
            st.one_of(st.integers(-5, 10**5), st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from(["", "nan", "x", "1e3"])),
            min_size=1, max_size=7,
        ),
        max_size=12,
    ),
    st.sampled_from([
        "frame,x [nm],y [nm],intensity [photon]",
        "id,frame,x [nm],y [nm],sigma [nm],intensity [photon],offset [photon]",
        "frame,x_nm,y_nm", "x,y", "",
    ]),
)  # fmt: skip
def test_generated_tables_read_or_give_a_format_error(tmp_path: Path, rows, header) -> None:  # type: ignore[no-untyped-def]
    from dblink_live.errors import FormatError
    from dblink_live.io.tables import read_localizations
    from dblink_live.localizations import Localizations

    f = tmp_path / "gen.csv"
    f.write_text("\n".join([header, *(",".join(str(v) for v in r) for r in rows)]) + "\n")
    try:
        locs = read_localizations(f)
    except FormatError as exc:
        assert f.name in str(exc)
        return
    assert isinstance(locs, Localizations)
    assert np.isfinite(locs.x_nm).all() and np.isfinite(locs.y_nm).all()
    assert (locs.frame >= 0).all()


# ------------------------------------------------------------------------------ environment
def test_view_without_a_display_says_so(small_rec: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}  # fmt: skip
    r = subprocess.run([*_cmd(), "view", str(small_rec)], capture_output=True, text=True,
                       env=env, timeout=60)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "no display is available" in r.stderr and "Traceback" not in r.stderr


def test_mm_config_is_looked_for_in_the_current_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["live", "--adapter-path", str(adapters), "--mm-config", "mine.cfg",
                 "--headless", "-o", str(tmp_path / "x.zarr")]) == 2  # fmt: skip
    err = " ".join(capsys.readouterr().err.split())
    assert f"Micro-Manager config file not found: mine.cfg (looked in {tmp_path}" in err
    from dblink_live.cli import _micromanager_paths

    (tmp_path / "mine.cfg").write_text("# a config\n")
    (adapters / "mine.cfg").write_text("# another\n")
    assert _micromanager_paths(adapters, Path("mine.cfg"))[1] == tmp_path / "mine.cfg"
    (tmp_path / "mine.cfg").unlink()  # then Micro-Manager's own habit: the adapter folder
    assert _micromanager_paths(adapters, Path("mine.cfg"))[1] == adapters / "mine.cfg"


def test_status_lines_in_a_log_are_throttled_and_warnings_said_once(capsys) -> None:
    from dblink_live.cli import _status_printer
    from dblink_live.pipeline_types import PipelineState, PipelineStatus

    def status(dropped: int, state=PipelineState.RUNNING) -> PipelineStatus:  # type: ignore[no-untyped-def]
        return PipelineStatus(state=state, dropped_frames=dropped,
                              warnings=(f"{dropped} frames dropped by the live path",))  # fmt: skip

    show = _status_printer(every_s=30.0)
    for i in range(200):  # a minute of status at 2 a second
        show(status(10 + i))
    show(status(300, PipelineState.DRAINING))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert sum(ln.startswith("running") for ln in lines) == 1
    assert sum(ln.startswith("draining") for ln in lines) == 1  # a state change is said
    assert sum("warning:" in ln for ln in lines) == 1

"""Memory estimates before a run: checked against real peaks, and refusals that say what fits."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from dblink_live.cli import main
from dblink_live.config import RunConfig, save_config
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.resources import (
    USABLE_FRACTION,
    MemoryNeed,
    available_memory_bytes,
    offline_bytes_per_bin,
)

REPO = Path(__file__).resolve().parents[1]


def _bench_memory():  # type: ignore[no-untyped-def]
    """scripts/bench_memory.py, the one place the peaks are measured."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_memory
    finally:
        sys.path.pop(0)
    return bench_memory


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("mode", ["live", "offline"])
def test_estimates_bound_the_measured_peak_without_overstating_it(mode: str) -> None:
    """The estimate is an upper bound of the real peak memory (so a run that passes the check
    does not run out), and not so loose that it refuses runs that would fit (within 2x)."""
    bench = _bench_memory()
    n = 256
    measured, estimate = bench.measured_peak_bytes(mode, n), bench.estimated_bytes(mode, n)
    assert measured <= estimate <= 2.0 * measured, (measured, estimate)


def test_a_need_over_the_free_memory_is_refused_with_what_fits() -> None:
    avail = available_memory_bytes("cpu")
    per_bin = 1000.0
    side = math.isqrt(int(2 * avail / per_bin))  # twice what is free
    need = MemoryNeed("live reconstruction", (side, side), 40.0, per_bin)
    assert not need.fits("cpu")
    with pytest.raises(DblinkError) as err:
        need.check("cpu", advice="try --roi with at most {px} pixels", pixel_size_nm=160.0)
    msg = str(err.value)
    fits = need.largest_square_bins(avail)
    assert f"{fits:,} x {fits:,} bins" in msg and "is free on cpu" in msg
    px = int(fits * 40.0 / 160.0)
    assert f"{px} x {px} camera pixels" in msg and f"at most {px} pixels" in msg
    assert MemoryNeed("x", (fits, fits), 40.0, per_bin).fits("cpu")  # what it says fits, fits
    MemoryNeed("x", (64, 64), 40.0, per_bin).check("cpu")  # small: no error


def test_simulate_refuses_a_field_too_large_before_writing(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "huge.yaml"
    save_config(
        RunConfig().updated(
            simulation={"camera": {"width_px": 4096, "height_px": 4096, "pixel_size_nm": 1000}}
        ),
        cfg,
    )
    out = tmp_path / "huge.zarr"
    assert main(["simulate", "-c", str(cfg), "-n", "20", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "simulating the ground truth on 102,400 x 102,400 bins" in " ".join(err.split())
    assert not out.exists()


def test_reprocess_lowers_its_chunk_to_fit(tmp_path: Path, caplog) -> None:
    """A grid too large for the default 32 maps a chunk is run with fewer (and says so)."""
    from dblink_live.recon.inference import load_recon_model
    from dblink_live.recon.reprocess import _fitting_chunk

    model = load_recon_model("recon_filaments", "cpu")
    avail = available_memory_bytes("cpu")
    bins = 1.5 * USABLE_FRACTION * avail / offline_bytes_per_bin(8, 32)
    side = int(math.sqrt(bins))
    chunk, batch = _fitting_chunk(model, (side, side), 32, 1, 10)
    assert chunk in (8, 16) and batch == 1
    assert MemoryNeed("x", (side, side), 40.0, offline_bytes_per_bin(8, chunk)).fits("cpu")
    assert "maps a step lowered from 32" in caplog.text
    with pytest.raises(DblinkError, match="offline reconstruction on"):
        _fitting_chunk(model, (40 * side, 40 * side), 32, 1, 10)
    # stride 1 at W = 10 on a large grid: the phases run one at a time (batching them pays on
    # small grids only), each step with fewer maps
    chunk, batch = _fitting_chunk(model, (side, side), 32, 10, 100)
    assert batch == 1 and chunk in (8, 16)
    from dblink_live.recon.reprocess import default_batch

    assert [default_batch((n, n), 10) for n in (64, 128, 256, 2048)] == [10, 10, 2, 1]


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_live_on_micromanagers_demo_config_reconstructs_a_region_that_fits(
    tmp_path: Path,
) -> None:
    """Micro-Manager's demo config (512 x 512 pixels of 1 um) is a 12,800 x 12,800-bin grid.
    With the full frame asked for, it is refused before any recording exists, with the region
    that fits; by default a centred region is reconstructed, said, and the full frame recorded."""
    mm_test_adapters = pytest.importorskip("mm_test_adapters")
    adapters = mm_test_adapters.device_adapter_path()

    def live(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dblink_live.cli", "live", "--adapter-path", adapters,
             "--mm-config", str(Path(adapters) / "MMConfig_demo.cfg"), "-n", "50",
             "--headless", "-o", str(out), "--device", "cpu", "--localizer", "classic", *extra],
            capture_output=True, text=True, timeout=200,
        )  # fmt: skip

    full = tmp_path / "full.zarr"
    r = live(full, "--recon-roi", "full")
    err = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stderr
    assert "12,800 x 12,800 bins" in err and "--recon-roi" in err and "Traceback" not in err
    assert not full.exists()
    auto = tmp_path / "auto.zarr"
    r = live(auto)
    said = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, said[-3000:]
    assert "centred region" in said and "Traceback" not in said
    rec = Recording.open(auto)
    assert rec.frame_shape == (512, 512) and rec.n_frames == 50
    attrs = rec.read_image("reconstruction")[1]
    x, y, w, h = attrs["recon_roi_px"]
    assert w < 512 and h < 512 and attrs["origin_nm"] == [x * 1000.0, y * 1000.0]

"""A live reconstruction region (``live.recon_roi``, ``--recon-roi``): the whole frame is
recorded and localized, a region of it is reconstructed; by default a camera too large for the
device at the camera's rate gets a centred region that it can reconstruct, and says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from dblink_live.acquire.replay import ReplaySource
from dblink_live.config import RunConfig
from dblink_live.errors import DblinkError
from dblink_live.io.recording import Recording
from dblink_live.pipeline import Pipeline, demo_pipeline
from dblink_live.recon.evaluate import evaluate_recording
from dblink_live.sim.record import simulate_recording
from dblink_live.sim.scene import grid_shape


def _config(size: int, frames: int = 200, **live) -> RunConfig:
    return RunConfig().updated(
        simulation={"n_frames": frames, "camera": {"width_px": size, "height_px": size}},
        live={"latency_budget_s": 600.0, **live},
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("roi") / "sim.zarr"
    simulate_recording(_config(32, 200), path, seed=4)
    return path


@pytest.mark.timeout(240)
def test_a_given_region_is_reconstructed_while_the_whole_frame_is_recorded(
    recording: Path, tmp_path: Path
) -> None:
    out = tmp_path / "roi.zarr"
    roi = (8, 4, 16, 20)  # x, y, width, height (pixels)
    cfg = _config(32, recon_roi=list(roi))
    pipe = Pipeline(ReplaySource(recording, speed=0), out, config=cfg, device="cpu")
    status = pipe.run()
    assert status.state.value == "finished", status.error
    assert pipe.recon_roi_px == roi
    rec = Recording.open(out)
    px = rec.pixel_size_nm
    assert rec.n_frames == 200 and rec.frame_shape == (32, 32)  # every frame, whole
    locs = rec.read_localizations()
    x0, y0, x1, y1 = roi[0] * px, roi[1] * px, (roi[0] + roi[2]) * px, (roi[1] + roi[3]) * px
    inside = (locs.x_nm >= x0) & (locs.x_nm < x1) & (locs.y_nm >= y0) & (locs.y_nm < y1)
    assert (~inside).sum() > 0.3 * len(locs)  # the whole frame is localized, not the region
    maps, attrs = rec.read_image("reconstruction")
    assert maps.shape[1:] == grid_shape((roi[2] * px, roi[3] * px), attrs["bin_nm"])
    assert attrs["origin_nm"] == [roi[0] * px, roi[1] * px]
    assert attrs["recon_roi_px"] == list(roi)
    b = attrs["bin_nm"]
    ome = rec.image_group("reconstruction").attrs["ome"]["multiscales"][0]["datasets"][0]
    shift = ome["coordinateTransformations"][1]["translation"]
    assert shift[1:] == pytest.approx([roi[1] * px + b / 2, roi[0] * px + b / 2])
    # the region's own input: localizations outside it never reach its maps
    live = pipe.latest(render_maps=1000)
    assert live.origin_nm == (roi[0] * px, roi[1] * px)
    assert live.render is not None and live.render.sum() == pytest.approx(inside.sum(), abs=1)
    # scored against the ground truth of the same region
    report = evaluate_recording(out)
    assert report["maps"] == len(maps) and report["reconstruction"]["tol1"]["recall"] > 0.3


def test_a_region_outside_the_frame_is_refused_in_one_line(recording: Path, tmp_path: Path) -> None:
    cfg = _config(32, recon_roi=[20, 0, 16, 16])
    pipe = Pipeline(ReplaySource(recording, speed=0), tmp_path / "x.zarr", config=cfg)
    with pytest.raises(DblinkError, match=r"does not fit the 32x32-pixel camera frame"):
        pipe.start()
    r = run_cli("replay", str(recording), "--recon-roi", "1,2", "-o", str(tmp_path / "y.zarr"))
    assert r.returncode == 2 and "--recon-roi must be x,y,width,height" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.mm
@pytest.mark.timeout(240)
def test_a_camera_too_large_for_the_device_gets_a_centred_region_that_keeps_up(
    tmp_path: Path,
) -> None:
    """A 128x128 camera at 100 Hz on the CPU: the full 512x512-bin grid takes far longer per
    map than the 0.1 s between maps, so a centred region is reconstructed, and said."""
    from dblink_live.config import ClassicLocalizerConfig

    cfg = _config(128, 60).model_copy(update={"localizer": ClassicLocalizerConfig()})
    out = tmp_path / "big.zarr"
    pipe = demo_pipeline(out, n_frames=60, fps=100, config=cfg, device="cpu")
    status = pipe.run()
    assert status.state.value == "finished", status.error
    x, y, w, h = pipe.recon_roi_px
    assert 8 <= w < 128 and 8 <= h < 128
    assert abs(x - (128 - w) / 2) <= 1 and abs(y - (128 - h) / 2) <= 1  # centred
    # the region was sized by the timing: it needs no more than the share of a map's time
    per_bin = pipe._recon_seconds_per_bin()
    px = pipe.source.pixel_size_nm
    gy, gx = grid_shape((w * px, h * px), pipe.bin_nm)
    assert gy * gx * per_bin <= 2 * 0.6 * 10 * 0.01  # x2: the two timings differ a little
    said = [m for m in status.warnings if "centred region" in m]
    assert said and "reprocess" in said[0] and "--recon-roi" in said[0]
    rec = Recording.open(out)
    assert rec.frame_shape == (128, 128) and rec.n_frames == 60
    maps = rec.read_image("reconstruction")[0]
    assert maps.shape[1:] == (gy, gx)
    assert np.isfinite(maps).all()


@pytest.mark.mm
@pytest.mark.timeout(300)
def test_a_live_region_gets_the_truth_of_that_region_and_a_full_frame_reprocess_is_scored(
    tmp_path: Path,
) -> None:
    """The virtual microscope draws the ground truth of the region reconstructed live only (a
    512x512 camera's whole field is 2048x2048 bins a map at 40 nm); it equals the whole
    field's truth under the region, and the whole frame reprocessed afterwards is scored
    against truth redrawn on the whole field."""
    from dblink_live.recon.reprocess import reprocess

    roi = (8, 4, 16, 20)
    cfg = _config(32, 100, recon_roi=list(roi))
    out = tmp_path / "demo.zarr"
    pipe = demo_pipeline(out, n_frames=100, fps=200, config=cfg, device="cpu")
    status = pipe.run()
    assert status.state.value == "finished", status.error
    rec = Recording.open(out)
    maps, attrs = rec.read_image("reconstruction")
    skel, skel_attrs = rec.read_image("gt/skeleton")
    struct, _ = rec.read_image("gt/structure")
    b, px = attrs["bin_nm"], rec.pixel_size_nm
    assert skel.shape == struct.shape == (10, *maps.shape[1:])
    assert skel_attrs["origin_nm"] == attrs["origin_nm"] == [roi[0] * px, roi[1] * px]
    scene = pipe.source.simulator.scene  # type: ignore[attr-defined]
    grid = cfg.grid.model_copy(update={"bin_nm": b})
    _, full_skel, full_struct = scene.ground_truth_maps(grid, 0, 3)
    i0, j0 = round(roi[1] * px / b), round(roi[0] * px / b)
    ny, nx = maps.shape[1:]
    assert skel[:3].any()
    assert np.array_equal(full_skel[:, i0 : i0 + ny, j0 : j0 + nx], skel[:3])
    assert np.allclose(full_struct[:, i0 : i0 + ny, j0 : j0 + nx], struct[:3], atol=1e-6)
    live = evaluate_recording(out)
    assert live["maps"] >= 8 and live["reconstruction"]["tol1"]["recall"] > 0.3
    reprocess(out, overwrite=True, device="cpu")
    full_maps, full_attrs = Recording.open(out).read_image("reconstruction")
    assert full_maps.shape[1:] == grid_shape((32 * px, 32 * px), b)
    assert not full_attrs.get("origin_nm") or full_attrs["origin_nm"] == [0.0, 0.0]
    whole = evaluate_recording(out)
    assert whole["maps"] == 10 and whole["reconstruction"]["tol1"]["recall"] > 0.3

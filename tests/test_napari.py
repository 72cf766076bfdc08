"""The napari plugin: npe2 manifest, reader and the live dock widget.

The reader tests run in-process on napari's Qt-free ``ViewerModel`` (through npe2, as napari
opens a file). The ``napari_gui`` tests use napari's own ``make_napari_viewer`` fixture, which
needs an OpenGL canvas: they run in a child pytest on a virtual X display (tests/conftest.py)
and are skipped, with the reason, where Xvfb is not installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dblink_live.config import RunConfig
from dblink_live.io.recording import Recording
from dblink_live.sim.record import simulate_recording

napari = pytest.importorskip("napari", reason="napari (the napari extra) is not installed")
npe2 = pytest.importorskip("npe2")

PLUGIN = "dblink-live"


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A simulated 32x32-pixel recording, localized and reconstructed."""
    from dblink_live.config import ClassicLocalizerConfig
    from dblink_live.localize.run import localize
    from dblink_live.recon.reprocess import reprocess

    cfg = RunConfig().updated(
        simulation={"n_frames": 100, "camera": {"width_px": 32, "height_px": 32}}
    )
    path = tmp_path_factory.mktemp("napari") / "sim.zarr"
    simulate_recording(cfg, path, seed=2)
    localize(path, config=ClassicLocalizerConfig(), device="cpu")
    reprocess(path)
    return path


def test_the_manifest_is_found_and_valid() -> None:
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    assert {c.id for c in manifest.contributions.commands} == {
        "dblink-live.get_reader",
        "dblink-live.live_widget",
    }
    assert manifest.contributions.readers[0].accepts_directories


def test_the_reader_claims_recordings_only(recording: Path, tmp_path: Path) -> None:
    from dblink_live.display.napari_reader import get_reader

    assert get_reader(str(recording)) is not None
    assert get_reader([str(recording), str(recording)]) is not None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert get_reader(str(plain)) is None  # napari then asks its other readers
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    assert get_reader(str(tmp_path / "x.zarr")) is None
    assert get_reader(str(recording / "raw")) is None  # an image group: OME-Zarr readers' job


def test_napari_opens_a_recording_with_scale_units_and_time(recording: Path) -> None:
    from napari.components import ViewerModel

    viewer = ViewerModel()
    layers = viewer.open(str(recording), plugin=PLUGIN)
    names = [layer.name for layer in layers]
    assert names[:3] == ["raw", "reconstruction", "confidence"]
    assert "localizations" in names
    rec = Recording.open(recording)
    px, dt = rec.pixel_size_nm, rec.frame_interval_s
    raw = viewer.layers["raw"]
    assert raw.data.shape == (100, 32, 32)
    np.testing.assert_allclose(raw.scale, [dt, px, px])
    np.testing.assert_allclose(raw.translate, [0.0, px / 2, px / 2])  # pixel centres
    assert [str(u) for u in raw.units] == ["second", "nanometer", "nanometer"]
    np.testing.assert_array_equal(np.asarray(raw.data[7]), rec.read_frames(7, 8)[0])
    recon = viewer.layers["reconstruction"]
    attrs = rec.read_image("reconstruction")[1]
    b, w = attrs["bin_nm"], attrs["window_frames"]
    np.testing.assert_allclose(recon.scale, [w * dt, b, b])
    np.testing.assert_allclose(recon.translate, [(w - 1) / 2 * dt, b / 2, b / 2])
    # the two images span the same field in world coordinates
    raw_extent = raw.translate[1:] + (np.array(raw.data.shape[1:]) - 0.5) * px
    recon_extent = recon.translate[1:] + (np.array(recon.data.shape[1:]) - 0.5) * b
    np.testing.assert_allclose(raw_extent, recon_extent)
    # localizations: the frame is the time axis, so each raw frame shows its own points
    points = viewer.layers["localizations"]
    locs = rec.read_localizations()
    assert len(points.data) == len(locs)
    np.testing.assert_allclose(points.data[:, 0], locs.frame)
    np.testing.assert_allclose(points.scale, [dt, 1.0, 1.0])
    np.testing.assert_allclose(points.features["photons"], locs.photons)


def test_a_torn_tail_is_not_shown(recording: Path, tmp_path: Path) -> None:
    """A killed writer can leave frames past the counter: napari sees the counted frames."""
    import shutil

    from dblink_live.display.napari_reader import read_recording

    path = tmp_path / "torn.zarr"
    shutil.copytree(recording, path)
    rec = Recording.open(path, mode="r+")
    rec.update_meta(frames_written=90)  # as if the last 10 frames' counter never landed
    (raw, _kw, kind), *_ = read_recording(path)
    assert kind == "image" and raw.shape == (90, 32, 32)
    with pytest.raises(IndexError):
        raw[95]
    assert np.asarray(raw[-1]).shape == (32, 32)


@pytest.mark.napari_gui
@pytest.mark.timeout(240)
def test_the_viewer_opens_a_recording_through_the_plugin(make_napari_viewer, recording) -> None:
    viewer = make_napari_viewer()
    viewer.open(str(recording), plugin=PLUGIN)
    rec = Recording.open(recording)
    assert viewer.layers["raw"].scale[1] == pytest.approx(rec.pixel_size_nm)
    viewer.dims.set_point(0, 0.5)  # world time, s
    viewer.layers["localizations"].visible = True
    assert viewer.layers["raw"]._slice_input.world_slice.point[0] == pytest.approx(0.5)


@pytest.mark.napari_gui
@pytest.mark.timeout(240)
def test_the_dock_widget_streams_a_replay_without_blocking_napari(
    make_napari_viewer, qtbot, recording, tmp_path
) -> None:
    from qtpy.QtCore import QTimer

    from dblink_live.display.napari_widget import LIVE_LAYERS

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Live reconstruction")
    ticks: list[float] = []
    beat = QTimer()
    beat.timeout.connect(lambda: ticks.append(time.monotonic()))
    beat.start(20)
    out = tmp_path / "replay.zarr"
    widget.start_replay(recording, out, speed=1.0)  # 100 frames of 10 ms: about 1 s of camera
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    beat.stop()
    assert widget.error is None, widget.error
    assert widget.pipeline.status().state.value == "finished"
    # napari's event loop kept turning while the pipeline was built, started, ran and drained:
    # the only pauses allowed are napari's own, once per layer added (it builds the layer's
    # canvas visual; about 1 s each with software OpenGL on Xvfb)
    gaps = np.diff(ticks)
    long = int((gaps > 0.3).sum())
    assert len(ticks) > 20 and np.median(gaps) < 0.05, (len(ticks), np.median(gaps))
    assert long <= widget.layers_created == 3, (long, np.sort(gaps)[-5:])
    assert widget.shown_version > 0
    done = Recording.open(out)
    maps, attrs = done.read_image("reconstruction")
    layer = viewer.layers[LIVE_LAYERS["reconstruction"]]
    assert layer.data.shape == maps.shape[1:]
    np.testing.assert_allclose(layer.scale, [attrs["bin_nm"]] * 2)
    np.testing.assert_allclose(layer.translate, [attrs["bin_nm"] / 2] * 2)
    np.testing.assert_allclose(layer.data, maps[-1], atol=1e-6)  # the newest map shown
    assert viewer.layers[LIVE_LAYERS["raw"]].data.shape == (32, 32)
    assert done.n_frames == 100
    widget.close()

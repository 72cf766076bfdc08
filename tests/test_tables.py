"""Foreign localization tables and TIFF stacks: real files, round trips, malformed input."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import yaml

from dblink_live.errors import FormatError
from dblink_live.io.tables import (
    READ_FORMATS,
    WRITE_FORMATS,
    read_localizations,
    read_stack,
    write_localizations,
)
from dblink_live.localizations import Localizations

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _random_locs(n: int = 500, seed: int = 0, n_frames: int = 80) -> Localizations:
    rng = np.random.default_rng(seed)
    photons = rng.uniform(100, 5000, n)
    photons[::7] = np.nan
    background = rng.uniform(5, 80, n)
    background[::11] = np.nan
    uncertainty = rng.uniform(3, 40, n)
    uncertainty[::13] = np.nan
    return Localizations(
        frame=np.sort(rng.integers(0, n_frames - 10, n)),
        x_nm=rng.uniform(0, 6400 * 1.07, n),
        y_nm=rng.uniform(0, 3200 * 1.07, n),
        photons=photons,
        background=background,
        uncertainty_nm=uncertainty,
        score=rng.uniform(0, 1, n),
        pixel_size_nm=107.0,
        n_frames=n_frames,
    )


def _assert_same(a: Localizations, b: Localizations, *, check_score: bool = True) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.frame, b.frame)
    for col in ("x_nm", "y_nm", "photons", "background", "uncertainty_nm"):
        np.testing.assert_allclose(
            getattr(a, col), getattr(b, col), rtol=2e-6, atol=1e-3, equal_nan=True, err_msg=col
        )
    if check_score:
        np.testing.assert_allclose(a.score, b.score, rtol=1e-6, equal_nan=True)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# Real files
# ------------------------------------------------------------------------------------------


def test_thunderstorm_export_with_quoted_header(shared_data: Path) -> None:
    locs = read_localizations(shared_data / "formats" / "thunderstorm_dstorm_data.csv")
    assert len(locs) == 19
    # first row: id 73897, frame 2001 (1-based), x, y, sigma, intensity, offset, ..., uncertainty
    assert locs.frame[0] == 2000
    assert locs.x_nm[0] == pytest.approx(1320.109670647555, rel=1e-6)
    assert locs.y_nm[0] == pytest.approx(26344.7124618434, rel=1e-6)
    assert locs.photons[0] == pytest.approx(296.55843680038157, rel=1e-6)
    assert locs.background[0] == pytest.approx(31.3024090311172, rel=1e-6)
    assert locs.uncertainty_nm[0] == pytest.approx(22.93255128689051, rel=1e-6)
    assert locs.score[0] == 1.0
    assert locs.n_frames == 2001
    assert locs.frame.dtype == np.int64 and locs.x_nm.dtype == np.float32


def test_thunderstorm_leterrier_3d(shared_data: Path) -> None:
    locs = read_localizations(shared_data / "real" / "thunderstorm_ts3d_leterrier.csv")
    assert len(locs) == 11_195
    assert locs.frame.min() == 0 and locs.frame.max() == 24_999
    assert locs.n_frames == 25_000
    # 1,24840.78095,20471.75758,-21.8435,141.5,153.3,4086,132,12.48,5.08,10.16,1
    assert locs.frame[0] == 0
    assert locs.x_nm[0] == pytest.approx(24840.78095, rel=1e-6)
    assert locs.y_nm[0] == pytest.approx(20471.75758, rel=1e-6)
    assert locs.photons[0] == pytest.approx(4086)
    assert locs.background[0] == pytest.approx(132)
    assert locs.uncertainty_nm[0] == pytest.approx(5.08, rel=1e-6)  # uncertainty_xy [nm]
    assert np.all(locs.score == 1.0)


def test_rieslab_lume_csv_is_one_based(shared_data: Path) -> None:
    path = shared_data / "real" / "u2os_microtubules_rieslab.csv"
    locs = read_localizations(path)
    assert len(locs) == 2_848
    # "#LUME" header comment -> 1-based frames; first row 1,20669,3512.6,-104.1,1398.4
    assert locs.frame[0] == 0
    assert locs.x_nm[0] == pytest.approx(20669)
    assert locs.y_nm[0] == pytest.approx(3512.6)
    assert locs.photons[0] == pytest.approx(1398.4)  # the "int" column
    assert np.isnan(locs.background).all() and np.isnan(locs.uncertainty_nm).all()
    assert np.all(locs.score == 1.0)
    assert locs.frame[-1] == 17_231
    assert read_localizations(path, frame_base=0).frame[0] == 1


def test_deepstorm_ground_truth_positions(shared_data: Path) -> None:
    locs = read_localizations(shared_data / "deepstorm_demo1" / "positions_demo1.csv")
    assert len(locs) == 4_956
    # 1,1,67.843,2484.15594,111.28713,2458.46515,50,4.47214
    assert locs.frame[0] == 0
    assert locs.x_nm[0] == pytest.approx(67.843, rel=1e-6)
    assert locs.y_nm[0] == pytest.approx(2484.15594, rel=1e-6)
    assert locs.photons[0] == pytest.approx(2458.46515, rel=1e-6)
    assert locs.background[0] == pytest.approx(50)
    assert np.isnan(locs.uncertainty_nm).all()
    assert locs.n_frames == 20  # the matching stack has 20 frames


def test_decode_h5_pixel_conversion(shared_data: Path) -> None:
    path = shared_data / "formats" / "decode_dstorm_data.h5"
    locs = read_localizations(path)
    assert len(locs) == 96
    with h5py.File(path, "r") as f:
        px_x, px_y = (float(v) for v in f["meta"].attrs["px_size"])
        xyz = f["data/xyz"][()].astype(np.float64)
        sig = f["data/xyz_sig"][()].astype(np.float64)
        frame_ix = f["data/frame_ix"][()]
        phot, bg, prob = f["data/phot"][()], f["data/bg"][()], f["data/prob"][()]
    assert (px_x, px_y) == (127.0, 117.0)
    assert locs.pixel_size_nm == 127.0
    np.testing.assert_array_equal(locs.frame, frame_ix)  # already 0-based
    # pixel centres at integer px coordinates -> +0.5 px, per-axis pixel size
    np.testing.assert_allclose(locs.x_nm, (xyz[:, 0] + 0.5) * px_x, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(locs.y_nm, (xyz[:, 1] + 0.5) * px_y, rtol=1e-6)
    unc = np.sqrt(((sig[:, 0] * px_x) ** 2 + (sig[:, 1] * px_y) ** 2) / 2)
    np.testing.assert_allclose(locs.uncertainty_nm, unc, rtol=1e-6)
    np.testing.assert_allclose(locs.photons, phot)
    np.testing.assert_allclose(locs.background, bg)
    np.testing.assert_allclose(locs.score, prob)
    # first row by hand: x -0.149208 px, y 138.894745 px, frame 294
    assert locs.frame[0] == 294
    assert locs.x_nm[0] == pytest.approx((-0.14920829 + 0.5) * 127, rel=1e-5)
    assert locs.y_nm[0] == pytest.approx((138.894745 + 0.5) * 117, rel=1e-6)


def test_rapidstorm_txt(shared_data: Path) -> None:
    locs = read_localizations(shared_data / "formats" / "rapidstorm_dstorm_data.txt")
    assert len(locs) == 14
    # 9657.4 24533.5 0 33290.1 1.19225e+006 767.733 (x nm, y nm, ImageNumber 0-based, ...)
    assert locs.frame[0] == 0
    assert locs.x_nm[0] == pytest.approx(9657.4)
    assert locs.y_nm[0] == pytest.approx(24533.5)
    assert locs.x_nm[-1] == pytest.approx(10665.5)
    # amplitude and background are A/D counts, not photons
    assert np.isnan(locs.photons).all() and np.isnan(locs.background).all()


def test_pixel_size_argument_is_recorded(shared_data: Path) -> None:
    path = shared_data / "real" / "thunderstorm_ts3d_leterrier.csv"
    assert read_localizations(path, pixel_size_nm=160.0).pixel_size_nm == 160.0


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    locs = _random_locs()
    suffix = {"thunderstorm": ".csv", "csv": ".csv", "decode": ".h5", "picasso": ".hdf5"}[fmt]
    path = tmp_path / f"locs{suffix}"
    write_localizations(locs, path, format=fmt)
    back = read_localizations(path, format=fmt)
    assert read_localizations(path).frame.tolist() == back.frame.tolist()  # auto detects it
    _assert_same(locs, back)
    if fmt == "thunderstorm":  # no pixel size or trailing empty frames in that format
        assert back.n_frames == locs.frame.max() + 1
    else:
        assert back.pixel_size_nm == pytest.approx(locs.pixel_size_nm)
        assert back.n_frames == locs.n_frames


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_empty(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / ("empty.hdf5" if fmt in ("decode", "picasso") else "empty.csv")
    write_localizations(Localizations.empty(pixel_size_nm=90.0, n_frames=5), path, format=fmt)
    back = read_localizations(path, format=fmt)
    assert len(back) == 0


def test_round_trip_of_real_thunderstorm(shared_data: Path, tmp_path: Path) -> None:
    orig = read_localizations(shared_data / "real" / "thunderstorm_ts3d_leterrier.csv")
    for fmt in WRITE_FORMATS:
        path = tmp_path / f"leterrier_{fmt}.{'hdf5' if fmt in ('decode', 'picasso') else 'csv'}"
        write_localizations(orig, path, format=fmt)
        _assert_same(orig, read_localizations(path))


def test_thunderstorm_writer_header_and_frames(tmp_path: Path) -> None:
    path = tmp_path / "ts.csv"
    write_localizations(_random_locs(n=3), path, format="thunderstorm")
    lines = path.read_text().splitlines()
    assert lines[0].startswith('"id","frame","x [nm]","y [nm]","intensity [photon]"')
    assert '"offset [photon]","uncertainty [nm]"' in lines[0]
    first = lines[1].split(",")
    assert first[0] == "1"
    assert int(first[1]) == _random_locs(n=3).frame[0] + 1  # 1-based


def test_picasso_sidecar_is_multidocument_yaml(tmp_path: Path) -> None:
    locs = _random_locs()
    path = tmp_path / "locs.hdf5"
    write_localizations(locs, path, format="picasso")
    docs = list(yaml.safe_load_all((tmp_path / "locs.yaml").read_text()))
    assert docs[0]["Frames"] == locs.n_frames
    assert docs[0]["Width"] >= 64 and docs[0]["Height"] >= 32
    assert docs[-1]["Pixelsize"] == 107.0
    with h5py.File(path, "r") as f:
        rec = f["locs"][()]
    assert {"frame", "x", "y", "photons", "bg", "lpx", "lpy"} <= set(rec.dtype.names)
    # camera pixels, centre of pixel c at c; shifted by whole pixels where a localization
    # lies in the outer half pixel (Picasso's sanity filter drops x <= 0), and said so
    shift = docs[-1].get("dblink_live shift (px)", [0, 0])
    assert shift == [int(locs.x_nm.min() < 53.5), int(locs.y_nm.min() < 53.5)]
    np.testing.assert_allclose(rec["x"], locs.x_nm / 107.0 - 0.5 + shift[0], rtol=1e-6, atol=1e-5)
    assert (rec["x"] > 0).all() and (rec["x"] < docs[0]["Width"]).all()
    assert (rec["lpx"] > 0).all() and np.isfinite(rec["photons"]).all()


@pytest.mark.parametrize("bad", [[1], "12", [1, 2, 3], ["a", 1]])
def test_a_picasso_shift_that_is_not_two_numbers_is_one_clear_error(
    tmp_path: Path, bad: object
) -> None:
    path = tmp_path / "locs.hdf5"
    write_localizations(_random_locs(), path, format="picasso")
    side = tmp_path / "locs.yaml"
    docs = list(yaml.safe_load_all(side.read_text()))
    docs[-1]["dblink_live shift (px)"] = bad
    side.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(FormatError, match=r"shift \(px\) is not two numbers"):
        read_localizations(path)


def test_picasso_pixel_size_from_argument_and_python_tags(tmp_path: Path) -> None:
    rec = np.zeros(2, dtype=[("frame", "u4"), ("x", "f4"), ("y", "f4"), ("lpx", "f4")])
    rec["frame"] = [0, 3]
    rec["x"] = [0.0, 10.25]
    rec["y"] = [1.0, 2.0]
    rec["lpx"] = [0.1, 0.2]
    with h5py.File(tmp_path / "old.hdf5", "w") as f:
        f.create_dataset("locs", data=rec)
    # an older Picasso sidecar: no Pixelsize, and a Python tag from PyYAML's unsafe dumper
    _write(
        tmp_path / "old.yaml",
        "Byte Order: <\nData Type: uint16\nFrames: 10\nHeight: 32\nWidth: 32\n---\n"
        "Box Size: 7\nROI: !!python/tuple [1, 2]\nGenerated by: Picasso Localize\n",
    )
    with pytest.raises(FormatError, match=r"old\.hdf5: pixel size unknown.*pixel_size_nm"):
        read_localizations(tmp_path / "old.hdf5")
    locs = read_localizations(tmp_path / "old.hdf5", pixel_size_nm=130.0)
    np.testing.assert_allclose(locs.x_nm, [65.0, 10.75 * 130.0])
    np.testing.assert_allclose(locs.y_nm, [195.0, 325.0])
    np.testing.assert_allclose(locs.uncertainty_nm, [13.0, 26.0], rtol=1e-6)  # lpx only
    assert locs.n_frames == 10 and locs.pixel_size_nm == 130.0
    assert np.isnan(locs.photons).all() and np.all(locs.score == 1.0)


def test_picasso_camera_pixel_size_wins_over_localize_and_is_said(tmp_path: Path, caplog) -> None:
    rec = np.zeros(1, dtype=[("frame", "u4"), ("x", "f4"), ("y", "f4")])
    rec["x"], rec["y"] = 10.0, 2.0
    with h5py.File(tmp_path / "cam.hdf5", "w") as f:
        f.create_dataset("locs", data=rec)
    _write(
        tmp_path / "cam.yaml",
        "Camera.Pixelsize: 160\nFrames: 10\nHeight: 32\nWidth: 32\n---\n"
        "Generated by: Picasso Localize\nPixelsize: 130\n",
    )
    with caplog.at_level("WARNING"):
        locs = read_localizations(tmp_path / "cam.hdf5")
    assert locs.pixel_size_nm == 160.0
    np.testing.assert_allclose(locs.x_nm, [10.5 * 160.0])
    assert "Camera.Pixelsize is 160 nm but Localize's Pixelsize is 130 nm" in caplog.text


def test_decode_csv_layout(tmp_path: Path) -> None:
    # the layout of DECODE's emitter_io.save_csv: three comment lines, then pandas to_csv
    # (NaN written as empty cells)
    text = (
        "# DECODE EmitterSet\n"
        '# {"version": "0.10.0"}\n'
        '# {"xy_unit": "px", "px_size": [100.0, 110.0]}\n'
        "x,y,z,phot,frame_ix,id,prob,bg,phot_cr,bg_cr,phot_sig,bg_sig,"
        "x_cr,y_cr,z_cr,x_sig,y_sig,z_sig\n"
        "1.5,2.0,10.0,1000.0,0,-1,0.9,50.0,,,,,,,,0.1,0.2,30.0\n"
        "-0.25,3.0,0.0,2000.0,4,-1,0.5,,,,,,,,,0.3,0.3,\n"
    )
    locs = read_localizations(_write(tmp_path / "emitters.csv", text))
    assert len(locs) == 2
    np.testing.assert_array_equal(locs.frame, [0, 4])
    np.testing.assert_allclose(locs.x_nm, [200.0, 25.0])
    np.testing.assert_allclose(locs.y_nm, [275.0, 385.0])
    np.testing.assert_allclose(locs.photons, [1000.0, 2000.0])
    np.testing.assert_allclose(locs.background, [50.0, np.nan])
    np.testing.assert_allclose(locs.score, [0.9, 0.5])
    np.testing.assert_allclose(
        locs.uncertainty_nm, [np.sqrt((10.0**2 + 22.0**2) / 2), np.sqrt((30.0**2 + 33.0**2) / 2)]
    )
    assert locs.pixel_size_nm == 100.0


def test_parsing_100k_rows_is_fast(tmp_path: Path) -> None:
    locs = _random_locs(n=100_000, n_frames=20_000)
    for fmt in ("csv", "thunderstorm"):
        path = tmp_path / f"big_{fmt}.csv"
        write_localizations(locs, path, format=fmt)
        t0 = time.perf_counter()
        back = read_localizations(path)
        elapsed = time.perf_counter() - t0
        assert len(back) == 100_000
        assert elapsed < 1.0, f"{fmt}: parsing 100k rows took {elapsed:.2f} s"


# ------------------------------------------------------------------------------------------
# Malformed input
# ------------------------------------------------------------------------------------------


def test_non_numeric_cell_names_line_and_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.csv",
        '"id","frame","x [nm]","y [nm]"\n1,1,10.0,20.0\n2,1,abc,30.0\n3,2,5.0,6.0\n',
    )
    with pytest.raises(FormatError) as info:
        read_localizations(path)
    msg = str(info.value)
    assert f"{path}:3:" in msg and "'x [nm]'" in msg and "'abc'" in msg
    assert "\n" not in msg


def test_non_numeric_cell_in_plain_csv_after_comments(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.csv", "# note\n\nframe,x,y\n0,1,2\n1,2,\n2,3,x\n")
    with pytest.raises(FormatError, match=r"plain\.csv:6: column 'y' is not a number: 'x'"):
        read_localizations(path)


def test_empty_position_cell_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "gap.csv", "frame,x,y\n0,1,2\n1,2,\n")
    with pytest.raises(FormatError, match=r"gap\.csv:3: column 'y' is missing"):
        read_localizations(path)


def test_missing_x_column_lists_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "nox.csv", '"frame","xx [nm]","y [nm]"\n1,2,3\n')
    with pytest.raises(FormatError, match=r"nox\.csv: no x column; found columns: frame, xx"):
        read_localizations(path)
    plain = _write(tmp_path / "nox_plain.csv", "frame,y,photons\n0,1,2\n")
    with pytest.raises(FormatError, match="no x column; found columns: frame, y, photons"):
        read_localizations(plain)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "empty.csv", content)
    with pytest.raises(FormatError, match=r"empty\.csv: file is empty"):
        read_localizations(path)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    locs = read_localizations(_write(tmp_path / "h.csv", "frame,x,y\n"))
    assert len(locs) == 0


def test_header_missing(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no header line"):
        read_localizations(_write(tmp_path / "nohead.csv", "0,1,2\n1,2,3\n"))


def test_short_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.csv", "frame,x,y,photons\n0,1,2,3\n1,2\n")
    with pytest.raises(FormatError, match=r"short\.csv:3: expected 4 fields, found 2"):
        read_localizations(path)


def test_fractional_and_out_of_range_frames(tmp_path: Path) -> None:
    frac = _write(tmp_path / "frac.csv", "frame,x,y\n0,1,2\n1.5,2,3\n")
    with pytest.raises(FormatError, match=r"frac\.csv:3: column 'frame' is not a whole frame"):
        read_localizations(frac)
    zero = _write(tmp_path / "ts.csv", '"frame","x [nm]","y [nm]"\n1,1,2\n0,2,3\n')
    with pytest.raises(FormatError, match=r"ts\.csv:3: column 'frame' is 0, below 1"):
        read_localizations(zero)


def test_unknown_length_unit_and_pixel_units(tmp_path: Path) -> None:
    bad = _write(tmp_path / "u.csv", '"frame","x [furlong]","y [nm]"\n1,1,2\n')
    with pytest.raises(FormatError, match=r"unknown length unit 'furlong'"):
        read_localizations(bad)
    px = _write(tmp_path / "px.csv", '"frame","x [px]","y [px]","uncertainty [px]"\n1,1,2,0.1\n')
    with pytest.raises(FormatError, match=r"px\.csv: column 'x \[px\]' is in pixels"):
        read_localizations(px)
    locs = read_localizations(px, pixel_size_nm=100.0)
    np.testing.assert_allclose([locs.x_nm[0], locs.y_nm[0]], [100.0, 200.0])
    assert locs.uncertainty_nm[0] == pytest.approx(10.0)


def test_picasso_without_yaml(tmp_path: Path) -> None:
    path = tmp_path / "locs.hdf5"
    write_localizations(_random_locs(n=5), path, format="picasso")
    (tmp_path / "locs.yaml").unlink()
    with pytest.raises(FormatError, match=r"locs\.hdf5: Picasso .* locs\.yaml .*not found"):
        read_localizations(path)


def test_picasso_with_broken_yaml(tmp_path: Path) -> None:
    path = tmp_path / "locs.hdf5"
    write_localizations(_random_locs(n=5), path, format="picasso")
    _write(tmp_path / "locs.yaml", "Frames: 3\nWidth: [1, 2\n")
    with pytest.raises(FormatError, match=r"locs\.yaml:\d+: invalid YAML"):
        read_localizations(path)


@pytest.mark.parametrize("fmt", ["decode", "picasso"])
def test_truncated_h5(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "locs.hdf5"
    write_localizations(_random_locs(n=2000), path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"locs\.hdf5: .*(truncated|corrupt|cannot read)"):
        read_localizations(path)


def test_garbage_h5_and_foreign_h5(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5 at all" * 10)
    with pytest.raises(FormatError, match=r"garbage\.h5: not a readable HDF5 file"):
        read_localizations(garbage)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 2)))
    with pytest.raises(FormatError, match=r"neither a DECODE .* found: images"):
        read_localizations(foreign)


def test_decode_without_px_size(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    write_localizations(_random_locs(n=4), path, format="decode")
    with h5py.File(path, "a") as f:
        del f["meta"].attrs["px_size"]
    with pytest.raises(FormatError, match=r"d\.h5: DECODE table has no px_size"):
        read_localizations(path)
    assert read_localizations(path, pixel_size_nm=107.0).pixel_size_nm == 107.0


def test_format_mismatch_and_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    write_localizations(_random_locs(n=4), path, format="decode")
    with pytest.raises(FormatError, match="holds a DECODE emitter set, not picasso"):
        read_localizations(path, format="picasso")
    with pytest.raises(FormatError, match="unknown localization format 'smap'"):
        read_localizations(path, format="smap")
    with pytest.raises(FormatError, match="cannot write localization format 'rapidstorm'"):
        write_localizations(_random_locs(n=4), tmp_path / "x.txt", format="rapidstorm")
    assert set(WRITE_FORMATS) <= set(READ_FORMATS)


def test_tiff_given_as_table(shared_data: Path) -> None:
    with pytest.raises(FormatError, match="TIFF image, not a localization table"):
        read_localizations(shared_data / "formats" / "images.tif")


def test_rapidstorm_malformed_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.txt", '# <localizations><field identifier="Position-0-0"\n1 2\n')
    with pytest.raises(FormatError, match=r"r\.txt:1: rapidSTORM XML header is malformed"):
        read_localizations(path)


@pytest.mark.parametrize("reader", [read_localizations, read_stack])
def test_missing_path(tmp_path: Path, reader: Callable[[Path], object]) -> None:
    with pytest.raises(FormatError, match=r"nope\.csv: no such file"):
        reader(tmp_path / "nope.csv")
    with pytest.raises(FormatError, match="not a file"):
        reader(tmp_path)


# ------------------------------------------------------------------------------------------
# TIFF stacks
# ------------------------------------------------------------------------------------------


def test_read_stack_real_files(shared_data: Path) -> None:
    frames, meta = read_stack(shared_data / "formats" / "images.tif")
    assert frames.shape == (5, 128, 128) and frames.dtype == np.uint16
    assert meta["shape"] == (5, 128, 128) and meta["pixel_size_nm"] is None
    frames, meta = read_stack(shared_data / "deepstorm_demo1" / "artificial_dataset_demo1.tif")
    assert frames.shape == (20, 64, 64) and frames.dtype == np.uint16
    assert meta["pixel_size_nm"] == pytest.approx(100.0)  # ImageJ: 10 px per um
    assert meta["source_dtype"] == "uint16"


def test_read_stack_single_page_and_conversions(tmp_path: Path) -> None:
    img = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10)
    tifffile.imwrite(tmp_path / "one.tif", img)
    frames, _ = read_stack(tmp_path / "one.tif")
    assert frames.shape == (1, 12, 10)
    np.testing.assert_array_equal(frames[0], img)

    tifffile.imwrite(
        tmp_path / "u8.tif", np.full((3, 4, 5), 200, np.uint8), photometric="minisblack"
    )
    frames, meta = read_stack(tmp_path / "u8.tif")
    assert frames.dtype == np.uint16 and frames.shape == (3, 4, 5) and frames.max() == 200
    assert meta["source_dtype"] == "uint8"

    tifffile.imwrite(tmp_path / "i32.tif", np.full((2, 4, 5), 70_000, np.int32))
    with pytest.raises(FormatError, match=r"i32\.tif: int32 values span .* outside uint16"):
        read_stack(tmp_path / "i32.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.full((2, 4, 5), -1, np.int16))
    with pytest.raises(FormatError, match="outside uint16"):
        read_stack(tmp_path / "neg.tif")

    tifffile.imwrite(tmp_path / "f32.tif", np.full((2, 4, 5), 0.5, np.float32))
    with pytest.raises(FormatError, match="non-integer values"):
        read_stack(tmp_path / "f32.tif")

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 5, 3), np.uint8), photometric="rgb")
    with pytest.raises(FormatError, match="colour"):
        read_stack(tmp_path / "rgb.tif")


def test_read_stack_not_a_tiff(tmp_path: Path) -> None:
    path = _write(tmp_path / "fake.tif", "frame,x,y\n")
    with pytest.raises(FormatError, match=r"fake\.tif: not a readable TIFF file"):
        read_stack(path)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty\.tif: not a readable TIFF file"):
        read_stack(empty)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.999])
def test_read_stack_truncated(shared_data: Path, tmp_path: Path, fraction: float) -> None:
    data = (shared_data / "formats" / "images.tif").read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(FormatError, match=r"cut\.tif: truncated"):
        read_stack(path)

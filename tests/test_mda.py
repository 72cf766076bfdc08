"""`live --mda SEQ.yaml`: a useq MDA sequence run by pymmcore-plus on Micro-Manager's real
DemoCamera (mm-test-adapters), its frames streamed through the live pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dblink_live.cli import main
from dblink_live.io.recording import Recording

pytest.importorskip("pymmcore_plus")
pytest.importorskip("useq")


@pytest.mark.mm
@pytest.mark.isolated
@pytest.mark.timeout(240)
def test_mda_sequence_on_the_democamera_records_every_frame_and_reconstructs(
    tmp_path: Path, capsys
) -> None:
    from dblink_live.acquire import demo_camera_paths

    adapters, mm_cfg = demo_camera_paths()
    seq = tmp_path / "sequence.yaml"
    seq.write_text(yaml.safe_dump({"time_plan": {"interval": 0, "loops": 120}}))
    out = tmp_path / "mda.zarr"
    code = main(
        ["live", "--mda", str(seq), "--adapter-path", adapters, "--mm-config", mm_cfg,
         "--roi", "0,0,48,48", "--pixel-size-nm", "160", "--exposure-ms", "5",
         "--device", "cpu", "-o", str(out), "--headless", "-q"]
    )  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said
    rec = Recording.open(out)
    assert rec.n_frames == 120 and rec.frame_shape == (48, 48)
    assert rec.meta["source"] == "MDASource"
    assert rec.meta["mda_sequence"]["time_plan"]["loops"] == 120
    found = rec.read_image("reconstruction")
    assert found is not None and len(found[0]) >= 8  # 120 frames / W = 10, minus skipped ones
    assert len(rec.read_localizations()) > 0


def test_mda_sequence_with_more_than_a_time_series_is_refused(tmp_path: Path, capsys) -> None:
    seq = tmp_path / "multi.yaml"
    seq.write_text(
        yaml.safe_dump({"time_plan": {"interval": 0, "loops": 5},
                        "channels": [{"config": "DAPI"}, {"config": "FITC"}]})
    )  # fmt: skip
    code = main(["live", "--mda", str(seq), "--adapter-path", str(tmp_path), "--mm-config",
                 str(seq), "-o", str(tmp_path / "x.zarr"), "--headless"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "more than a time series (c=2)" in " ".join(err.split())
    bad = tmp_path / "bad.yaml"
    bad.write_text("time_plan: {loops: -3}\n")
    code = main(["live", "--mda", str(bad), "--adapter-path", str(tmp_path), "--mm-config",
                 str(seq), "-o", str(tmp_path / "y.zarr"), "--headless"])  # fmt: skip
    assert code == 2 and "not a valid useq MDA sequence" in capsys.readouterr().err

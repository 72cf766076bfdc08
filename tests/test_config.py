"""Config models: shipped YAML files load and round-trip; bad input gives one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dblink_live.config import (
    RunConfig,
    SCMOSCameraConfig,
    config_from_dict,
    load_config,
    save_config,
)
from dblink_live.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_shipped_configs_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"filaments.yaml", "mitochondria.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    again = load_config(save_config(cfg, tmp_path / "again.yaml"))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_mitochondria_config_uses_its_own_sections() -> None:
    cfg = load_config(CONFIGS[[p.name for p in CONFIGS].index("mitochondria.yaml")])
    assert cfg.simulation.structure.kind == "mitochondria"
    assert isinstance(cfg.simulation.camera, SCMOSCameraConfig)
    assert cfg.simulation.camera.pixel_size_nm == 108


def test_defaults_are_the_smlm2016_emccd() -> None:
    cam = RunConfig().simulation.camera
    assert (cam.kind, cam.qe, cam.em_gain, cam.read_noise_e, cam.e_per_adu, cam.baseline_adu) == (
        "emccd",
        0.9,
        300.0,
        74.4,
        45.0,
        100.0,
    )
    assert RunConfig().simulation.optics.psf_sigma_nm == pytest.approx(0.21 * 660 / 1.49)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "version: 1\nsimulation:\n  camera:\n    kind: emccd\n    gian: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert f"{p}:5" in msg
    assert "unknown key 'simulation.camera.gian'" in msg
    assert "em_gain" in msg  # the allowed keys are listed
    assert "\n" not in msg


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    p = _write(tmp_path, "grid:\n  bin_nm: 0.5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: grid.bin_nm: Input should be greater"):
        load_config(p)


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "grid:\n  bin_nm: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_config(p)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_unknown_kind_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"simulation.camera.kind: unknown kind 'ccd'.*'emccd'"):
        config_from_dict({"simulation": {"camera": {"kind": "ccd"}}})


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"simulation": {"photophysics": {"duty_cycle": 0.01}}}, "exactly one of density_per_um2"),
        ({"simulation": {"motion": {"drift_speed_nm_per_s": [10, 1]}}}, "low <= high"),
        ({"simulation": {"structure": {"bundle_size": [1, 3]}}}, "bundle_size"),
        ({"simulation": {"camera": {"qe": 1.5}}}, "simulation.camera.qe"),
        ({"version": 2}, "version"),
    ],
)
def test_cross_field_checks(change: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(change)


def test_updated_validates_and_switches_kinds() -> None:
    cfg = RunConfig().updated(simulation={"structure": {"kind": "mitochondria"}, "n_frames": 7})
    assert cfg.simulation.structure.kind == "mitochondria"
    assert cfg.simulation.n_frames == 7
    with pytest.raises(ConfigError):
        RunConfig().updated(simulation={"n_frames": -1})

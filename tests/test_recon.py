"""ConvBiLSTM: presets, chunked offline inference == whole sequence, strides, training, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli

from dblink_live.config import ClassicLocalizerConfig, ReconModelConfig, RunConfig
from dblink_live.errors import DblinkError
from dblink_live.io import Recording
from dblink_live.recon.data import map_scale, training_sequence
from dblink_live.recon.inference import (
    load_recon_model,
    reconstruct_sequence,
    reconstruct_sequences,
)
from dblink_live.recon.model import ConvBiLSTM
from dblink_live.recon.reprocess import reconstruct_localizations

TINY = (
    "simulation:\n  camera: {width_px: 16, height_px: 16}\n"
    "recon_training:\n  steps: 2\n  batch_size: 1\n  tile_bins: 32\n  sequence_maps: 4\n"
    "  validate_every: 1\n  validation_sequences: 1\n  checkpoint_every: 1\n"
)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env, timeout=600)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    (d / "tiny.yaml").write_text(TINY)
    out = d / "tiny.pt"
    r = _cli(
        "train",
        "-c",
        str(d / "tiny.yaml"),
        "-o",
        str(out),
        "-q",
        "--device",
        "cpu",
        "--threads",
        "1",
    )
    assert r.returncode == 0, r.stderr
    return out


def test_presets_match_the_published_sizes() -> None:
    paper = ConvBiLSTM(**ReconModelConfig(preset="dblink_paper").model_dump())
    light = ConvBiLSTM(**ReconModelConfig().model_dump())
    n_paper = sum(p.numel() for p in paper.parameters())
    assert n_paper == pytest.approx(1.27e6, rel=0.01)
    assert paper.macs_per_pixel() * 128 * 128 / 1e9 == pytest.approx(20.8, rel=0.02)
    assert light.macs_per_pixel() * 20 < paper.macs_per_pixel()


def test_model_is_fully_convolutional_and_causal_per_direction() -> None:
    torch.manual_seed(0)
    m = ConvBiLSTM(**ReconModelConfig().model_dump()).eval()
    x = torch.rand(1, 6, 1, 20, 28)
    rec, conf = m(x)
    assert rec.shape == conf.shape == (1, 6, 20, 28)
    fw, _ = m.run_direction(x, "forward")
    x2 = x.clone()
    x2[:, 4:] = 0  # the future does not change the forward features of the past
    fw2, _ = m.run_direction(x2, "forward")
    assert torch.allclose(fw[:, :4], fw2[:, :4])


def test_chunked_offline_equals_the_whole_sequence() -> None:
    torch.manual_seed(1)
    m = ConvBiLSTM(**ReconModelConfig().model_dump()).eval()
    maps = np.random.default_rng(0).random((11, 24, 24)).astype(np.float32)
    with torch.no_grad():
        logit, conf = m(torch.from_numpy(maps)[None, :, None])
    whole = torch.sigmoid(logit[0]).numpy()
    parts = list(reconstruct_sequence(m, lambda s, e: maps[s:e], len(maps), chunk_maps=4))
    assert [p[0] for p in parts] == [0, 4, 8]
    chunked = np.concatenate([p[1] for p in parts])
    assert np.allclose(chunked, whole, atol=1e-5)
    assert np.allclose(
        np.concatenate([p[2] for p in parts]), torch.sigmoid(conf[0]).numpy(), atol=1e-5
    )


def test_sequences_batched_side_by_side_equal_each_run_alone() -> None:
    """Sequences of different lengths in one batch: each gets exactly its own full-context
    result (a shorter one's backward pass starts at its own last map)."""
    torch.manual_seed(2)
    m = ConvBiLSTM(**ReconModelConfig().model_dump()).eval()
    rng = np.random.default_rng(1)
    lengths = [9, 7, 9, 8]
    seqs = [rng.random((n, 20, 20)).astype(np.float32) for n in lengths]
    padded = np.zeros((len(seqs), 9, 20, 20), np.float32)
    for i, sq in enumerate(seqs):
        padded[i, : len(sq)] = sq
        padded[i, len(sq) :] = 5.0  # past a sequence's end: must not be used
    parts = list(reconstruct_sequences(m, lambda a, b: padded[:, a:b], lengths, chunk_maps=4))
    assert [p[0] for p in parts] == [0, 4, 8]
    rec = np.concatenate([p[1] for p in parts], axis=1)
    conf = np.concatenate([p[2] for p in parts], axis=1)
    for i, sq in enumerate(seqs):
        alone = list(reconstruct_sequence(m, lambda a, b, sq=sq: sq[a:b], len(sq), chunk_maps=3))
        assert np.allclose(rec[i, : len(sq)], np.concatenate([p[1] for p in alone]), atol=1e-5)
        assert np.allclose(conf[i, : len(sq)], np.concatenate([p[2] for p in alone]), atol=1e-5)
        assert not rec[i, len(sq) :].any()


def test_normalization_is_invariant_to_window_and_density() -> None:
    base = map_scale(0.5, 10, 40.0)
    assert map_scale(0.5, 20, 40.0) == pytest.approx(2 * base)
    assert map_scale(1.0, 10, 40.0) == pytest.approx(2 * base)
    cfg = RunConfig()
    a, _ = training_sequence(cfg, 3, 64, 4, 10, 0.5)
    b, _ = training_sequence(cfg, 3, 64, 2, 20, 0.5)  # same frames, windows twice as long
    assert a.sum() / a.size == pytest.approx(b.sum() / b.size, rel=0.25)


def test_background_probability_leaves_a_share_of_sequences_clean() -> None:
    """``background_probability`` p: about p of the sequences get background localizations,
    the others none; the fraction drawn for those with background is the one drawn at p = 1."""
    base = RunConfig().updated(
        recon_training={"background_fraction": (0.2, 0.5), "clustered_background_probability": 0.5}
    )
    mixed = base.updated(recon_training={"background_probability": 0.4})
    info: dict = {}
    with_bg = tried = 0
    for seed in range(60):
        plain: dict = {}
        training_sequence(RunConfig(), seed, 32, 2, 10, 0.5, info=plain)
        if plain["localizations"] < 20:
            continue  # no structure in this tile: no background is added either
        tried += 1
        n_all = []
        for cfg in (base, mixed):
            training_sequence(cfg, seed, 32, 2, 10, 0.5, info=info)
            n_all.append(info["localizations"])
        assert n_all[0] > plain["localizations"]  # p = 1: every sequence has background
        assert n_all[1] in (plain["localizations"], n_all[0])  # none, or the same draw
        with_bg += n_all[1] == n_all[0]
    assert tried >= 20
    assert 0.2 * tried <= with_bg <= 0.6 * tried  # 0.4 x tried expected


def test_training_checkpoint_describes_itself_and_resumes(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    ckpt = torch.load(tiny_checkpoint, weights_only=False)
    assert ckpt["format"] == "dblink-live-recon" and ckpt["step"] == 2
    assert ckpt["grid"] == {"bin_nm": 40.0, "window_frames": 10}
    assert ckpt["architecture"]["preset"] == "light"
    assert ckpt["best_model_state"] is not None
    loaded = load_recon_model(tiny_checkpoint, "cpu")
    assert loaded.window_frames == 10 and loaded.describe()["sha256"]
    r = _cli(
        "train",
        "-c",
        str(tiny_checkpoint.with_suffix(".yaml")),
        "-o",
        str(tiny_checkpoint),
        "--steps",
        "3",
        "--resume",
        str(tiny_checkpoint),
        "-q",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    assert torch.load(tiny_checkpoint, weights_only=False)["step"] == 3


def test_distributed_training_with_two_cpu_processes(tmp_path: Path) -> None:
    """torchrun + DistributedDataParallel on the gloo backend, 2 processes."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "dblink_live.cli",
            "train",
            "-c",
            str(cfg),
            "-o",
            str(out),
            "-q",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["metrics"]["world_size"] == 2 and ckpt["step"] == 2


def test_strides_interleave_phase_passes(tiny_checkpoint: Path) -> None:
    from dblink_live.sim import simulate_localizations

    cfg = RunConfig().updated(simulation={"camera": {"width_px": 16, "height_px": 16}})
    seq = simulate_localizations(cfg, n_frames=60, seed=2, with_gt=False)
    model = load_recon_model(tiny_checkpoint, "cpu")
    fov = (16 * 160.0, 16 * 160.0)
    w10 = np.concatenate(
        [r for _, r, _ in reconstruct_localizations(seq.localizations, model, fov, 60)]
    )
    w5 = np.concatenate(
        [r for _, r, _ in reconstruct_localizations(seq.localizations, model, fov, 60, 5, 2)]
    )
    s1 = np.concatenate(
        [r for _, r, _ in reconstruct_localizations(seq.localizations, model, fov, 60, 1, 3)]
    )
    assert len(w10) == 6 and len(w5) == 11 and len(s1) == 51
    assert np.allclose(w5[::2], w10, atol=1e-5)
    assert np.allclose(s1[::10], w10, atol=1e-5)
    # the phases batched (default), one at a time (the unbatched path) and in groups of 3,
    # on a length whose phases differ by one map: the same outputs and confidences
    runs = [
        list(reconstruct_localizations(seq.localizations, model, fov, 57, 1, 20, batch=b))
        for b in (None, 1, 3)
    ]
    outs = [np.concatenate([r for _, r, _ in run]) for run in runs]
    confs = [np.concatenate([c for _, _, c in run]) for run in runs]
    assert len(outs[0]) == 48
    for o, c in zip(outs[1:], confs[1:], strict=True):
        assert np.allclose(o, outs[0], atol=1e-5) and np.allclose(c, confs[0], atol=1e-5)
    with pytest.raises(DblinkError, match="must divide"):
        next(reconstruct_localizations(seq.localizations, model, fov, 60, 3))


def test_reprocess_and_evaluate_end_to_end(tiny_checkpoint: Path, tmp_path: Path) -> None:
    sim = tmp_path / "sim.zarr"
    assert (
        _cli(
            "simulate",
            "-n",
            "60",
            "-o",
            str(sim),
            "-q",
            "-c",
            str(tiny_checkpoint.with_suffix(".yaml")),
        ).returncode
        == 0
    )
    r = _cli(
        "reprocess",
        str(sim),
        "--weights",
        str(tiny_checkpoint),
        "--localizer",
        "classic",
        "--tiff",
        "--gif",
        "-q",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    rec = Recording.open(sim)
    assert rec.n_localizations > 0  # localized first
    data, attrs = rec.read_image("reconstruction")
    assert data.shape == (6, 64, 64) and data.min() >= 0 and data.max() <= 1
    assert attrs["model"]["name"] == "tiny" and attrs["stride_frames"] == 10
    assert rec.read_image("confidence")[0].shape == data.shape
    assert (tmp_path / "sim_reconstruction.tif").exists() and (
        tmp_path / "sim_preview.gif"
    ).exists()
    r = _cli("reprocess", str(sim), "--weights", str(tiny_checkpoint), "-q")
    assert r.returncode == 2 and "already has a reconstruction" in r.stderr
    r = _cli(
        "evaluate", str(sim), "-o", str(tmp_path / "ev.json"), "--figure", str(tmp_path / "ev.png")
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "ev.json").read_text())
    assert set(report["baselines"]) == {"static_W", "static_10W"}
    assert 0 <= report["reconstruction"]["tol1"]["recall"] <= 1
    assert (tmp_path / "ev.png").stat().st_size > 10_000
    # a run killed between a map's reconstruction and its confidence (the counters are written
    # after the data): evaluate scores the maps that have both
    rec = Recording.open(sim, mode="r+")
    rec.image_array("confidence").attrs["frames_written"] = 5
    r = _cli("evaluate", str(sim), "-o", str(tmp_path / "ev5.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "ev5.json").read_text())["maps"] == 5


def test_reprocess_a_localization_table(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from dblink_live.io.tables import write_localizations
    from dblink_live.sim import simulate_localizations

    cfg = RunConfig().updated(simulation={"camera": {"width_px": 32, "height_px": 32}})
    seq = simulate_localizations(cfg, n_frames=40, seed=4, with_gt=False)
    assert len(seq.localizations) > 100
    table = tmp_path / "locs.csv"
    write_localizations(seq.localizations, table, format="thunderstorm")
    out = tmp_path / "table.zarr"
    r = _cli(
        "reprocess",
        str(table),
        "-o",
        str(out),
        "--weights",
        str(tiny_checkpoint),
        "-q",
        "--pixel-size-nm",
        "160",
    )
    assert r.returncode == 0, r.stderr
    rec = Recording.open(out)
    assert rec.n_localizations == len(seq.localizations)
    assert len(rec.read_image("reconstruction")[0]) == 4


def test_evaluate_needs_ground_truth(tmp_path: Path) -> None:
    rec = Recording.create(
        tmp_path / "r.zarr", frame_shape=(8, 8), pixel_size_nm=100, frame_interval_s=0.01
    )
    rec.create_image("reconstruction", (20, 20), "float32", bin_nm=40, window_frames=10)
    rec.append_image("reconstruction", np.zeros((2, 20, 20), np.float32))
    r = _cli("evaluate", str(tmp_path / "r.zarr"))
    assert r.returncode == 2 and "no ground truth" in r.stderr


def test_confidence_target_uses_the_evaluation_tolerance() -> None:
    from dblink_live.recon.training import confidence_target

    gt = torch.zeros(1, 1, 5, 5)
    gt[0, 0, 2, 2] = 1
    p = torch.zeros(1, 1, 5, 5)
    p[0, 0, 2, 3] = 0.9  # next to the truth: right within 1 bin
    p[0, 0, 0, 0] = 0.9  # far from it: a hallucination
    right = confidence_target(p, gt)
    assert right[0, 0, 2, 3] == 1 and right[0, 0, 0, 0] == 0
    assert right[0, 0, 2, 2] == 0  # missed structure
    assert right[0, 0, 4, 4] == 1  # correct background


def test_torch_binning_equals_numpy() -> None:
    from dblink_live.localizations import count_maps
    from dblink_live.recon.data import count_maps_torch
    from dblink_live.sim import simulate_localizations

    cfg = RunConfig().updated(simulation={"camera": {"width_px": 32, "height_px": 32}})
    locs = simulate_localizations(cfg, n_frames=50, seed=1, with_gt=False).localizations
    a = count_maps(locs, 40.0, (128, 128), 10, 5, 0)
    b = count_maps_torch(locs, 40.0, (128, 128), 10, 5, 0).numpy()
    assert a.sum() > 0 and np.array_equal(a, b)


def test_reprocess_at_another_window(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from dblink_live.recon.reprocess import reprocess as run_reprocess
    from dblink_live.sim.record import simulate_recording

    cfg = RunConfig().updated(
        simulation={"camera": {"width_px": 16, "height_px": 16}}, grid={"window_frames": 20}
    )

    path = tmp_path / "w20.zarr"
    simulate_recording(cfg, path, n_frames=100)
    run_reprocess(
        path,
        weights=str(tiny_checkpoint),
        window_frames=20,
        device="cpu",
        localizer=ClassicLocalizerConfig(),
    )
    data, attrs = Recording.open(path).read_image("reconstruction")
    assert attrs["window_frames"] == 20 and attrs["stride_frames"] == 20 and len(data) == 5


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_losses_decrease_on_a_fixed_batch(loss: str) -> None:
    from dblink_live.recon.training import recon_loss, sample_batch

    cfg = RunConfig().updated(
        recon_training={"loss": loss, "batch_size": 2, "tile_bins": 32, "sequence_maps": 4}
    )
    torch.manual_seed(0)
    model = ConvBiLSTM(**cfg.recon_model.model_dump())
    maps, gt = sample_batch(cfg, np.random.default_rng(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first, parts = recon_loss(model, maps, gt, cfg)
    assert loss in parts
    for _ in range(15):
        total, _ = recon_loss(model, maps, gt, cfg)
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < first.item()


def test_a_missing_checkpoint_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(DblinkError) as err:
        load_recon_model(tmp_path / "nope.pt", "cpu")
    text = str(err.value)
    assert "nope.pt" in text
    for name in ("recon_filaments", "recon_filaments_live", "recon_mitochondria"):
        assert name in text


def test_models_command_describes_shipped_and_own_weights(tiny_checkpoint: Path) -> None:
    r = _cli("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    shipped = {p.stem for p in (Path(__file__).parents[1] / "dblink_live" / "weights").glob("*.pt")}
    assert set(rows) == shipped
    light = rows["recon_filaments"]
    assert light["kind"] == "reconstruction" and light["structure"] == "filaments"
    assert light["architecture"]["preset"] == "light" and light["parameters"] == 31_314
    assert abs(light["gmac_per_128px_map"] - 0.51) < 0.01  # the README's figure
    assert rows["recon_filaments_wrange"]["trained_window_frames"] == [10, 40]
    assert rows["recon_filaments_wrange"]["fine_tuned_from"] == "recon_filaments"
    assert rows["localizer"]["kind"] == "localizer"
    own = _cli("models", str(tiny_checkpoint), "--json")
    (row,) = json.loads(own.stdout)
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    assert row["steps"] == ckpt["step"] >= 2 and row["path"] == str(tiny_checkpoint)
    table = _cli("models", env={**os.environ, "COLUMNS": "200"})
    assert "recon_filaments_live" in table.stdout and "GMAC" in table.stdout


def test_models_command_rejects_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, junk)
    r = _cli("models", str(junk))
    assert r.returncode != 0 and "not a dblink_live checkpoint" in r.stderr
    r = _cli("models", "recon_nothing")
    assert r.returncode != 0 and "recon_filaments_live" in r.stderr


def test_shipped_model_choice_by_structure_and_window() -> None:
    from dblink_live.recon.inference import choose_recon_weights

    assert choose_recon_weights("filaments", 10) == "recon_filaments"
    assert choose_recon_weights("filaments", 40) == "recon_filaments_wrange"
    assert choose_recon_weights("filaments", 25) == "recon_filaments_wrange"
    assert choose_recon_weights("mitochondria", 10) == "recon_mitochondria"
    assert choose_recon_weights("mitochondria", 40) == "recon_mitochondria"  # none fits: warned
    # far beyond every trained range: the closest range wins (warned by the caller)
    assert choose_recon_weights("filaments", 1000) == "recon_filaments_wrange"
    assert choose_recon_weights("filaments", 2) == "recon_filaments"
    with pytest.raises(DblinkError, match="no shipped reconstruction model for 'actin'"):
        choose_recon_weights("actin", 10)
    fil = load_recon_model("recon_filaments", "cpu")
    assert fil.trained_window_frames == (10, 10) and fil.window_warning(10) is None
    assert "recon_filaments_wrange was trained for it" in fil.window_warning(40)
    wrange = load_recon_model("recon_filaments_wrange", "cpu")
    assert wrange.trained_window_frames == (10, 40) and wrange.window_warning(40) is None
    mito = load_recon_model("recon_mitochondria", "cpu").window_warning(40)
    assert "outside the range" in mito and "trained for it" not in mito


def test_reprocess_command_window_and_auto_model(tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text(
        "simulation:\n  structure: {kind: mitochondria}\n  camera: {width_px: 16, height_px: 16}\n"
    )
    sim = tmp_path / "mito.zarr"
    assert _cli("simulate", "-c", str(small), "-n", "80", "-o", str(sim), "-q").returncode == 0
    # --window-frames reaches the reconstruction; auto reads the structure from the recording
    r = _cli("reprocess", str(sim), "--window-frames", "20", "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    assert "with recon_mitochondria" in r.stdout
    assert "outside the range recon_mitochondria was trained on" in r.stderr
    _, attrs = Recording.open(sim).read_image("reconstruction")
    assert attrs["window_frames"] == 20 and attrs["stride_frames"] == 20
    assert attrs["model"]["name"] == "recon_mitochondria"
    # the structure given with -c wins; W=40 picks the model trained for long windows
    fil = tmp_path / "fil.yaml"
    fil.write_text("simulation:\n  camera: {width_px: 16, height_px: 16}\n")
    r = _cli("reprocess", str(sim), "-c", str(fil), "--window-frames", "40", "--overwrite", "-q")
    assert r.returncode == 0, r.stderr
    assert "with recon_filaments_wrange" in r.stdout and "outside the range" not in r.stderr
    assert Recording.open(sim).read_image("reconstruction")[1]["window_frames"] == 40
    # evaluating at W=40 redraws the simulation's ground truth on that grid
    report = tmp_path / "ev40.json"
    r = _cli("evaluate", str(sim), "-o", str(report), "--figure", str(tmp_path / "ev40.png"))
    assert r.returncode == 0, r.stderr
    ev = json.loads(report.read_text())
    assert ev["window_frames"] == 40 and ev["maps"] == 2
    assert 0 < ev["reconstruction"]["tol1"]["recall"] <= 1


def test_redrawn_ground_truth_equals_the_stored_one_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    from dblink_live.recon.evaluate import _truth_on_grid
    from dblink_live.sim.record import simulate_recording

    cfg = RunConfig().updated(simulation={"camera": {"width_px": 16, "height_px": 16}})
    path = tmp_path / "s.zarr"
    simulate_recording(cfg, path, n_frames=60, seed=7)
    rec = Recording.open(path)
    stored = rec.read_image("gt/skeleton")
    (skel, _meta), (struct, _) = _truth_on_grid(rec, stored, 40.0, 10)  # the stored grid
    assert np.array_equal(skel, stored[0]) and skel.any()
    assert np.array_equal(struct, rec.read_image("gt/structure")[0])
    (skel20, meta20), _ = _truth_on_grid(rec, stored, 40.0, 20)
    assert skel20.shape == (3, *skel.shape[1:]) and meta20["window_frames"] == 20
    tampered = (np.roll(stored[0], 5, axis=-1), stored[1])
    with pytest.raises(DblinkError, match="does not reproduce"):
        _truth_on_grid(rec, tampered, 40.0, 20)


def _real_table_part(shared_data: Path, frames: int):
    """The first ``frames`` frames of the real U2OS microtubule table (Ries lab, CC0)."""
    from dblink_live.io.tables import read_localizations

    locs = read_localizations(shared_data / "real" / "u2os_microtubules_rieslab.csv")
    part = locs.select(locs.frame < frames)
    part.n_frames = frames
    return part


def test_a_table_reconstructs_on_its_own_box_and_identically_when_shifted(
    tiny_checkpoint: Path, tmp_path: Path, shared_data: Path
) -> None:
    """A real table (data at x 18-21 um, y 3-11 um) gets a grid on its bounding box, never
    from the origin; shifted by 20 um it reconstructs identically, shifted."""
    from dataclasses import replace

    from dblink_live.io.tables import write_localizations

    part = _real_table_part(shared_data, 200)
    shifted = replace(part, x_nm=part.x_nm + 20_000.0, y_nm=part.y_nm + 20_000.0)
    results = []
    for name, table in (("a", part), ("b", shifted)):
        path = tmp_path / f"{name}.csv"
        write_localizations(table, path, format="thunderstorm")
        out = tmp_path / f"{name}.zarr"
        r = _cli("reprocess", str(path), "-o", str(out), "--weights", str(tiny_checkpoint), "-q")
        assert r.returncode == 0, r.stderr
        results.append(Recording.open(out))
    (ra, aa), (rb, ab) = (rec.read_image("reconstruction") for rec in results)
    assert ra.shape == rb.shape and ra.shape[0] >= 19  # the CSV keeps frames up to the last
    # box of the data plus 1 um each side, in 40 nm bins: far smaller than from the origin
    assert ra.shape[2] * 40 < (part.x_nm.max() - part.x_nm.min()) + 2100
    assert aa["origin_nm"][0] == pytest.approx(np.floor((part.x_nm.min() - 1000) / 40) * 40)
    assert ab["origin_nm"][0] == pytest.approx(aa["origin_nm"][0] + 20_000.0)
    np.testing.assert_allclose(ra, rb, atol=1e-5)
    ome = results[1].image_group("reconstruction").attrs["ome"]
    translation = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
    centre = [ab["origin_nm"][1] + 20.0, ab["origin_nm"][0] + 20.0]  # of bin (0, 0)
    assert translation["translation"][1:] == pytest.approx(centre)
    assert aa["density_per_um2"] == pytest.approx(ab["density_per_um2"])


def test_a_sparse_real_table_is_warned_about_and_empty_maps_get_no_confidence(
    tmp_path: Path, shared_data: Path
) -> None:
    """The real table holds ~0.01 localizations/um^2/frame, far below the shipped model's
    training range: reprocess says so with the W that would fit; its frame interval and pixel
    size are not in the file, which is said too; maps with no localization get confidence 0."""
    from dblink_live.io.tables import write_localizations
    from dblink_live.recon.reprocess import reprocess

    part = _real_table_part(shared_data, 400)
    table = tmp_path / "u2os.csv"
    write_localizations(part, table, format="thunderstorm")
    res = reprocess(table, output=tmp_path / "u2os.zarr", device="cpu")
    text = " | ".join(res.warnings)
    assert "is outside the range recon_filaments was trained on" in text
    assert "/um2/frame" in text and "W=" in text
    assert "does not state the frame interval" in text and "camera pixel size" in text
    rec = Recording.open(tmp_path / "u2os.zarr")
    _, attrs = rec.read_image("reconstruction")
    conf, _ = rec.read_image("confidence")
    per_frame = np.bincount(part.frame, minlength=400)
    per_map = per_frame.reshape(-1, 10).sum(axis=1)
    assert (per_map == 0).any()  # the table has empty windows
    assert (conf[per_map == 0] == 0).all()
    assert (conf[per_map > 0].max(axis=(1, 2)) > 0).all()
    assert rec.image_array("confidence").attrs["maps_without_localizations"] == (per_map == 0).sum()
    assert attrs["density_per_um2"] < 0.1


def _static_field(tmp_path: Path, drift_nm: float = 0.0):
    """A static simulated field (no motion) as a table; optionally drifting linearly in x."""
    from dataclasses import replace

    from dblink_live.io.tables import write_localizations
    from dblink_live.sim import simulate_localizations

    still = {k: [0.0, 0.0] for k in ("drift_speed_nm_per_s", "rotation_deg_per_s")}
    cfg = RunConfig().updated(
        simulation={"camera": {"width_px": 24, "height_px": 24}, "motion": still}
    )
    seq = simulate_localizations(cfg, n_frames=300, seed=9, with_gt=False)
    locs = seq.localizations
    if drift_nm:
        locs = replace(locs, x_nm=locs.x_nm + drift_nm * locs.frame / 300.0)
    table = tmp_path / f"static_{drift_nm:g}.csv"
    write_localizations(locs, table, format="thunderstorm")
    return table


@pytest.mark.parametrize("drift_nm", [0.0, 300.0])
def test_evaluate_static_scores_a_static_sample_against_its_accumulation(
    tmp_path: Path, drift_nm: float
) -> None:
    """`evaluate --static`: a static simulated field, reprocessed, agrees with its own
    accumulated localizations (drift corrected); a drift of 300 nm over the run is found."""
    table = _static_field(tmp_path, drift_nm)
    out = tmp_path / "static.zarr"
    r = _cli("reprocess", str(table), "-o", str(out), "-q", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    report = tmp_path / "static.json"
    r = _cli("evaluate", str(out), "--static", "-o", str(report))
    assert r.returncode == 0, r.stderr
    assert "hallucination" in r.stdout
    rep = json.loads(report.read_text())
    assert rep["maps"] == 30
    assert rep["recall"] > 0.5 and rep["hallucination"] < 0.3
    assert rep["drift_nm_max"] == pytest.approx(drift_nm / 2, abs=60)


def test_evaluate_static_on_a_real_table(tmp_path: Path, shared_data: Path) -> None:
    """The real ThunderSTORM table (a static sample): every number is computed and bounded;
    reconstructions from W = 10 frames of ~0.02 localizations/um^2/frame mostly miss the
    accumulated structure, and the report says how much."""
    from dblink_live.io.tables import read_localizations, write_localizations
    from dblink_live.recon.static_check import evaluate_static

    locs = read_localizations(shared_data / "real" / "thunderstorm_ts3d_leterrier.csv")
    part = locs.select(locs.frame < 600)
    table = tmp_path / "ts.csv"
    write_localizations(part, table, format="thunderstorm")
    out = tmp_path / "ts.zarr"
    r = _cli("reprocess", str(table), "-o", str(out), "-q", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rep = evaluate_static(out)
    assert rep["maps"] >= 59 and rep["localizations"] == len(part)
    for key in ("hallucination", "false_positive_rate", "recall"):
        assert 0.0 <= rep[key] <= 1.0
    assert rep["structure_pixels"]["reference"] > 0


def test_reprocess_localizes_the_frames_that_never_were(
    tiny_checkpoint: Path, tmp_path: Path, caplog
) -> None:
    """A recording whose second half was never localized (as after live drops or a kill):
    the recording says which frames are missing, and reprocess localizes them first."""
    from dblink_live.localize.run import localize_missing
    from dblink_live.recon.reprocess import reprocess
    from dblink_live.sim import simulate_movie

    cfg = RunConfig().updated(simulation={"camera": {"width_px": 24, "height_px": 24}})
    movie = simulate_movie(cfg, n_frames=60, seed=2)
    path = tmp_path / "partial.zarr"
    rec = Recording.create(
        path,
        frame_shape=(24, 24),
        pixel_size_nm=160.0,
        frame_interval_s=0.01,
        camera=movie.metadata["camera"],
    )
    rec.append_frames(movie.raw)
    rec.clear_localizations({"name": "cnn"})
    assert rec.unlocalized_frames() == [(0, 60)]
    rec.append_localizations(localize_missing(rec, [(0, 30)], device="cpu")[0])
    rec.mark_localized(0, 30)
    assert rec.unlocalized_frames() == [(30, 60)]
    with caplog.at_level("WARNING"):
        reprocess(path, weights=str(tiny_checkpoint), device="cpu")
    assert "30 of 60 frames were never localized" in caplog.text
    rec = Recording.open(path)
    assert rec.unlocalized_frames() == []
    locs = rec.read_localizations()
    assert (locs.frame >= 30).sum() > 0 and (locs.frame < 30).sum() > 0


@pytest.mark.timeout(600)
def test_a_static_sample_is_reconstructed_as_static(tmp_path: Path) -> None:
    """A simulated sample that does not move, reprocessed with the shipped default: its
    reconstructions agree from map to map and from the first map to the last (the issue saw a
    static real table play as moving or flickering structure), and the structure they draw is
    the sample's."""
    from dblink_live.metrics import score_reconstruction, temporal_consistency
    from dblink_live.recon.reprocess import reprocess
    from dblink_live.sim.record import simulate_recording

    still = {
        "drift_speed_nm_per_s": (0.0, 0.0),
        "rotation_deg_per_s": (0.0, 0.0),
        "object_speed_nm_per_s": (0.0, 0.0),
        "wobble_amplitude_nm": (0.0, 0.0),
    }
    cfg = RunConfig().updated(
        simulation={"n_frames": 400, "camera": {"width_px": 32, "height_px": 32}, "motion": still}
    )
    path = tmp_path / "static.zarr"
    simulate_recording(cfg, path, seed=5)
    reprocess(path, device="cpu", weights="recon_filaments")
    rec = Recording.open(path)
    maps, _ = rec.read_image("reconstruction")
    truth, _ = rec.read_image("gt/skeleton")
    assert len(maps) == 40
    assert temporal_consistency(maps) > 0.9
    first, last = maps[2].ravel(), maps[-3].ravel()  # away from the sequence's ends
    assert np.corrcoef(first, last)[0, 1] > 0.75
    assert np.array_equal(truth[0], truth[-1])  # the truth itself does not move
    binary = maps >= 100 / 255 * maps.max(axis=(1, 2), keepdims=True)
    assert score_reconstruction(binary, truth.astype(bool), 1).jaccard > 0.8

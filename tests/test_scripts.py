"""Scripts in scripts/ run (quick mode) and write the JSON they promise, so docs cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_bench_sim_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(repo / "scripts" / "bench_sim.py"), "--quick", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["raw"][0]["raw_frames_per_s"] > 0
    assert {d["structure"] for d in data["localization_space"]} == {"filaments", "mitochondria"}
    assert data["trainer"]["sequences_per_s"] > 0
    assert data["generated_over_consumed"] > 0
    assert "generated / consumed" in r.stdout


def _run(repo: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_localize_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = _run(repo, "bench_localize.py", "--quick", "-o", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    kinds = {(row["localizer"], row["camera_px"]) for row in data["results"]}
    assert kinds == {("cnn", 64), ("classic", 64), ("cnn", 256), ("classic", 256)}
    assert all(row["frames_per_s"] > 0 for row in data["results"])


def test_bench_recon_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = _run(repo, "bench_recon.py", "--quick", "-o", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert {row["preset"] for row in data["throughput"]} == {"light", "dblink_paper"}
    s1 = data["stride1"]
    # the redundancy is measured as work (ConvLSTM steps), not as time: timings are the
    # benchmark's business and a loaded machine makes them noisy
    assert s1["outputs"] > 0 and s1["speed_ratio"] > 0
    assert s1["map_steps"]["sliding_window"] > 4 * s1["map_steps"]["carried"]
    # carried full context and the sliding window agree where their contexts coincide
    assert set(s1["accuracy_1bin"]) == {"carried", "sliding_window"}


def test_bench_reprocess_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = _run(repo, "bench_reprocess.py", "--quick", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    for row in data["stride1_batched_vs_one_phase"]:
        # the paths compared side by side compute the same outputs (timings are the
        # benchmark's business, not the test's)
        assert row["max_abs_difference_batched_vs_one_phase"] == 0.0
        assert row["max_abs_difference_now_vs_before"] < 1e-4
        assert len(row["maps_per_s"]) == 4
    assert {row["stride"] for row in data["throughput"]} == {1, 10}
    if data["memory_by_length"]:
        assert all(row["peak_bytes"] > 0 for row in data["memory_by_length"])


def test_bench_ring_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = _run(repo, "bench_ring.py", "--frames", "50", "--sizes", "64", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["results"]
    kinds = {"numpy", "numpy+staged", "zarr-memory", "zarr-memory+staged", "zarr-disk+staged"}
    assert {(row["storage"], row["readers"]) for row in rows} == {
        (k, n) for k in kinds for n in (0, 2)
    }
    assert all(0 < row["p50_us"] <= row["p99_us"] <= row["max_us"] for row in rows)


def test_bench_delay_quick(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "bench.json"
    r = _run(
        repo,
        "bench_delay.py",
        "--sequences",
        "1",
        "--maps",
        "6",
        "--field-px",
        "16",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["results"]
    assert rows[0]["delay_maps"] == 0 and rows[-1]["label"] == "full"


def test_gpu_check_script_refers_to_what_exists(repo: Path) -> None:
    """scripts/gpu_check.sh only runs on a GPU machine: check here that it parses and that every
    script, config and option it uses exists."""
    import re
    import shutil

    script = repo / "scripts" / "gpu_check.sh"
    bash = shutil.which("bash")
    assert bash and subprocess.run([bash, "-n", str(script)]).returncode == 0
    text = script.read_text().replace("\\\n", " ")
    for cfg in re.findall(r"configs/\S+\.yaml", text):
        assert (repo / cfg).is_file(), cfg
    calls = re.findall(r"(scripts/\w+\.py)([^\n]*)", text)
    assert len(calls) == 4
    for path, args in calls:
        helptext = _run(repo, Path(path).name, "--help").stdout
        for flag in re.findall(r"(--[a-z-]+)", args):
            assert flag in helptext, (path, flag)


@pytest.mark.mm
@pytest.mark.timeout(300)
def test_stress_democamera_counts_rounds(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "stress.json"
    r = _run(repo, "stress_democamera.py", "--children", "2", "--rounds", "2", "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["rounds"] == data["rounds_ok"] == 4
    assert data["crashed_children"] == data["failed_children"] == 0


def test_bench_robustness_one_cell(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "rob.json"
    fig = tmp_path / "rel.png"
    r = _run(
        repo,
        "bench_robustness.py",
        "--only",
        "background 25 % uniform",
        "-o",
        str(out),
        "--figure",
        str(fig),
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(out.read_text())
    assert row["cell"] == "background 25 % uniform" and row["model"] == "recon_filaments"
    for tol in ("tol0", "tol1"):
        assert 0 <= row["dblink"][tol]["jaccard"] <= 1
    assert 0 <= row["confidence_tempered"]["ece"] <= 1
    assert fig.stat().st_size > 1000 and "| background 25 % uniform |" in r.stdout


def test_eval_camera_estimate_runs(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "cam.json"
    r = _run(repo, "eval_camera_estimate.py", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())
    sim = [row for row in rows if "true_offset_adu" in row and row["frames"] == 100]
    assert len(sim) == 4 and all(abs(row["gain_error"]) < 0.1 for row in sim)


def test_second_generator_is_apart_from_the_training_simulator(repo: Path) -> None:
    """scripts/othersim.py imports nothing from dblink_live.sim and makes what it promises."""
    lines = (repo / "scripts" / "othersim.py").read_text().splitlines()
    imports = [ln for ln in lines if ln.startswith(("from ", "import "))]
    assert imports and not any("dblink_live.sim" in ln for ln in imports)
    sys.path.insert(0, str(repo / "scripts"))
    try:
        import othersim
    finally:
        sys.path.pop(0)
    field = othersim.generate(othersim.OtherSimConfig(n_frames=100, true_density_per_um2=0.4))
    locs = field.localizations
    density = len(locs) / 100 / (5.12**2)
    assert 0.25 < density < 0.6
    assert field.skeleton.shape == (10, 128, 128) and 0.005 < field.skeleton.mean() < 0.2
    noisy = othersim.generate(
        othersim.OtherSimConfig(n_frames=100, background_fraction=0.5, seed=0)
    )
    assert len(noisy.localizations) == pytest.approx(2 * len(locs), rel=0.1)

"""Scripts in scripts/ run (quick mode) and write the JSON they promise, so docs cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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

"""The GPU benchmark script, run with ``--smoke`` on the CPU: GPU time is scarce, so the script
itself (model from the preset, DeepSpeed ZeRO-2 bf16, ZeRO-3 with optimizer and parameter
offload, the micro-batch search, the JSON summary) is checked here before it is spent."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_benchmark_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/bench_gpu_throughput.py", "--smoke", "--large-micro-batch", "4",
                           "--max-xl-micro-batch", "2", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=540)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    large, *xl = summary["results"]
    assert large["case"] == "large-bf16-zero2" and large["micro_batch"] == 4 and "failed" not in large
    assert [r["micro_batch"] for r in xl] == [1, 2] and not any("failed" in r for r in xl)
    assert summary["xl_largest_fitting"] == xl[-1]
    for r in summary["results"]:
        assert r["device"] == "cpu" and r["tokens_per_s"] > 0 and r["mfu"] is None  # no peak FLOP/s for a CPU
        assert all(math.isfinite(loss) for loss in r["losses"])
        assert r["estimate_gb"] > 0
        # MFU counts 6 * preset.params per token: the preset's formula must match the model built
        assert abs(r["model_params"] - r["params"]) / r["params"] < 0.05

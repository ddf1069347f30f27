"""The GPU check script, run with ``--smoke`` on the CPU: GPU time is scarce, so the script itself
(the study through `sweep run` with every job's device read back from MLflow; the XLM-R-Large
plain fp32 / plain bf16 / ZeRO-2 bf16 step loops with MFU and the profiler; the ZeRO-3 XL
micro-batch search; the JSON summary) is checked here before it is spent."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def test_mfu_counts_non_embedding_matmuls_and_attention_and_peaks_by_exact_device():
    from gpu_check import flops_per_token, peak_flops

    from trainables.presets import PRESETS

    large = PRESETS["xlm-roberta-large"]
    n = large.params - (large.hidden * large.hidden + large.hidden)   # the model built has no pooler
    per_token = flops_per_token(n, large, 256)
    embedding = (large.vocab + large.max_positions + large.type_vocab) * large.hidden
    assert per_token == 6 * (n - embedding) + 12 * 24 * 1024 * 256
    assert 6 * n / per_token == pytest.approx(1.77, abs=0.01)         # how far 6N overstated MFU
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA H100 NVL") == 835e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12 and peak_flops("NVIDIA A10G") == 125e12
    assert peak_flops("NVIDIA L40S") is None                          # unknown: named, not guessed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path, toy_root, small_model) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--large-micro-batch", "4",
                           "--max-xl-micro-batch", "2", "--out", str(out), "--study-model", str(small_model),
                           "--study-data", str(toy_root)],
                          capture_output=True, text=True, cwd=REPO, timeout=840)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    study, *steps = summary["results"]
    assert study["case"] == "study-1-worker" and study["all_on_expected_device"] and study["wall_s"] > 0
    assert {j["stage"] for j in study["jobs"]} == {"target"} and all(j["device"].startswith("cpu (") for j in study["jobs"])
    assert summary["two_worker"] == "skipped: no GPUs"
    throughput, xl = steps[:3], steps[3:]
    assert [r["case"] for r in throughput] == ["large-plain-fp32", "large-plain-bf16", "large-zero2-bf16"]
    assert [r["micro_batch"] for r in xl] == [1, 2] and all(r["case"] == "xl-zero3" for r in xl)
    assert summary["xl_largest_fitting"] == xl[-1]
    for r in steps:
        assert "failed" not in r, r
        assert r["device"] == "cpu" and r["tokens_per_s"] > 0 and r["mfu"] is None  # no peak FLOP/s for a CPU
        assert all(math.isfinite(loss) for loss in r["losses"])
        assert r["estimate_gb"] > 0
        assert r["flops_per_token"] < 6 * r["model_params"]                 # embeddings do no matmul
    # bf16 below the MFU goal (no MFU on a CPU) comes with a profiler table; fp32 does not
    assert throughput[1]["profile_top"] and throughput[2]["profile_top"] and throughput[0]["profile_top"] is None

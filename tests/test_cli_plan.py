"""The ``sweep`` console script on specs: ``validate`` / ``plan`` / ``run --dry-run`` on a bad spec
exit 2 with exactly one line on stderr naming the field, and create nothing; ``plan --json`` and
the text table agree; both carry the memory estimate per GPU, from a driver that imports no torch.

Each console-script call starts a Python process (a few seconds of imports), so the subprocess
calls of this module run once, concurrently, in a module fixture, and the remaining cases call
``sweep.cli.main`` in-process (same code path, same exit code and stderr).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from trainables.tasks import task_info

SWEEP = str(Path(sys.executable).parent / "sweep")
TIMEOUT = 120


def good_spec(root: Path) -> dict:
    return {
        "name": "cli-plan",
        "intermediate": ["none", "toy_paraphrase", ["toy_chunk", "toy_paraphrase"]],
        "targets": ["toy_xnli", {"task": "toy_pos", "languages": ["en", "xs"]}, "toy_tatoeba"],
        "seeds": [1, 2, 3],
        "hyperparameters": {"target": {"learning_rate": [1e-5, 3e-5]}},
        "storage": str(root / "runs"),
        "cache_dir": str(root / "cache"),
    }


# (case id, command, change to the good spec, field path expected in the one stderr line)
BAD_CASES = [
    ("validate-language", ["validate"],
     {"targets": ["toy_xnli", {"task": "toy_pos", "languages": ["en", "xss"]}]}, "targets[1].languages[1]"),
    ("plan-unknown-key", ["plan"], {"seed": [1]}, "seed"),
    ("plan-json-hyperparameter", ["plan", "--json"],
     {"hyperparameters": {"target": {"learning_rate": 0}}}, "hyperparameters.target.learning_rate"),
    ("run-dry-run-intermediate", ["run", "--dry-run"],
     {"intermediate": ["none", "toy_tatoeba"]}, "intermediate[1]"),
    ("plan-gpu-memory", ["plan"], {"resources": {"gpu": 1, "gpu_memory_gb": 0}}, "resources.gpu_memory_gb"),
    ("validate-missing-lexicon", ["validate"],  # one file for every language: must exist now
     {"evaluation": {"perturbations": [{"name": "code_switch", "lexicon": "muse/en-de.txt"}]}},
     "evaluation.perturbations[0].lexicon"),
]


# these run through the real console script; every case also runs in-process
SUBPROCESS_CASES = ("validate-language", "plan-unknown-key")


@dataclass
class Call:
    cwd: Path
    spec: Path
    result: subprocess.CompletedProcess


def _sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([SWEEP, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env)


# the XL preset on one 80 GB GPU: under ZeRO-3 with optimizer and parameters offloaded, and as
# plain fp32 AdamW (no deepspeed block), which needs more than 80 GB at batch 32 x 128 tokens
XL = "facebook/xlm-roberta-xl"
XL_ZERO3_OFFLOAD = {"model": XL, "resources": {"cpu": 1, "gpu": 1}, "precision": "bf16",
                    "deepspeed": {"stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"}}
XL_PLAIN = {"model": XL, "resources": {"cpu": 1, "gpu": 1}, "precision": "fp32"}

TORCH_FREE = ("import json, sys\n"
              "from sweep.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "heavy = sorted(m for m in ('torch', 'transformers', 'deepspeed', 'ray') if m in sys.modules)\n"
              "print(json.dumps({'heavy_modules': heavy}))\n"
              "sys.exit(code)\n")


def _python_plan(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``sweep <args>`` through ``sweep.cli.main`` in a fresh interpreter that then says which
    heavy modules the call imported (the driver plans without torch)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-c", TORCH_FREE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict[str, Call]:
    jobs: dict[str, tuple[list[str], Path, Path]] = {}
    for case_id, command, change, _ in BAD_CASES:
        if case_id not in SUBPROCESS_CASES:
            continue
        root = tmp_path_factory.mktemp(case_id)
        spec = root / "study.yaml"
        spec.write_text(yaml.safe_dump({**good_spec(root), **change}, sort_keys=False))
        jobs[case_id] = ([*command, spec.name], root, spec)

    root = tmp_path_factory.mktemp("good")
    spec = root / "study.yaml"
    spec.write_text(yaml.safe_dump(good_spec(root), sort_keys=False))
    jobs["plan-json"] = (["plan", "--json", str(spec)], root, spec)

    root = tmp_path_factory.mktemp("memory")
    spec = root / "study.yaml"
    spec.write_text(yaml.safe_dump({**good_spec(root), **XL_ZERO3_OFFLOAD}, sort_keys=False))
    jobs["plan-memory-torch-free"] = (["plan", "--json", str(spec)], root, spec)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {k: pool.submit(_python_plan if k == "plan-memory-torch-free" else _sweep, args, cwd)
                   for k, (args, cwd, _) in jobs.items()}
        return {k: Call(jobs[k][1], jobs[k][2], f.result()) for k, f in futures.items()}


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def _in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    from sweep.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(args)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _check_bad(call: Call, field: str) -> None:
    line = _one_error_line(call.result)
    assert f": {field}: " in line, line
    assert call.spec.name in line
    # nothing created: not the storage dir, not the cache, nothing else in the working directory
    assert not (call.cwd / "runs").exists()
    assert not (call.cwd / "cache").exists()
    assert sorted(p.name for p in call.cwd.iterdir()) == [call.spec.name]


@pytest.mark.parametrize("case_id, command, change, field",
                         [c for c in BAD_CASES if c[0] in SUBPROCESS_CASES], ids=list(SUBPROCESS_CASES))
def test_bad_spec_console_script(calls, case_id, command, change, field):
    _check_bad(calls[case_id], field)


@pytest.mark.parametrize("case_id, command, change, field", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_spec_in_process(tmp_path, monkeypatch, capsys, case_id, command, change, field):
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump({**good_spec(tmp_path), **change}, sort_keys=False))
    result = _in_process([*command, spec.name], tmp_path, monkeypatch, capsys)
    _check_bad(Call(tmp_path, spec, result), field)


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["run", "--dry-run"]])
def test_invalid_yaml_exits_2_naming_file_and_line(tmp_path, monkeypatch, capsys, command):
    spec = tmp_path / "study.yaml"
    spec.write_text(f"name: broken\nstorage: {tmp_path / 'runs'}\ntargets: [toy_xnli\nseeds: [1]\n")
    line = _one_error_line(_in_process([*command, spec.name], tmp_path, monkeypatch, capsys))
    assert spec.name in line and "line " in line and "YAML" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_missing_file_exits_2(tmp_path, monkeypatch, capsys):
    line = _one_error_line(_in_process(["plan", "nowhere.yaml"], tmp_path, monkeypatch, capsys))
    assert "nowhere.yaml" in line and "not found" in line
    assert list(tmp_path.iterdir()) == []


def _expected_counts(spec: dict) -> dict[str, int]:
    entries = spec["intermediate"]
    seeds = len(spec["seeds"])
    names = [t if isinstance(t, str) else t["task"] for t in spec["targets"]]
    n_eval = sum(1 for t in names if not task_info(t).trainable)
    n_inter = sum(1 for e in entries if e != "none")
    return {"intermediate": n_inter * seeds,
            "target": len(entries) * (len(names) - n_eval) * seeds,
            "eval": len(entries) * n_eval * seeds,
            "without_reuse": n_inter * len(names) * seeds}


def test_plan_json_shape_and_counts(calls):
    result = calls["plan-json"].result
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    jobs = out["jobs"]
    assert isinstance(jobs, list) and jobs
    for job in jobs:
        assert {"id", "stage", "depends_on"} <= set(job)
        assert job["stage"] in ("intermediate", "target", "eval")
    ids = [j["id"] for j in jobs]
    assert len(set(ids)) == len(ids)
    assert all(d in set(ids) for j in jobs for d in j["depends_on"])
    expected = _expected_counts(yaml.safe_load(calls["plan-json"].spec.read_text()))
    stages = {s: sum(1 for j in jobs if j["stage"] == s) for s in ("intermediate", "target", "eval")}
    assert stages == {k: expected[k] for k in stages}
    assert out["counts"] == stages
    assert out["reuse"]["without_reuse"] == expected["without_reuse"]
    assert out["reuse"]["intermediate_trainings"] == expected["intermediate"]
    # the languages given for toy_pos reach its jobs; eval jobs carry no hyperparameters
    for j in jobs:
        if j["target"] == "toy_pos":
            assert j["languages"] == ["en", "xs"]
        if j["stage"] == "eval":
            assert j["hyperparameters"] == {}
    # planning creates nothing either
    assert sorted(p.name for p in calls["plan-json"].cwd.iterdir()) == ["study.yaml"]


def test_plan_text_agrees_with_json(calls, monkeypatch, capsys):
    js = calls["plan-json"].result
    # the text table in-process (one console-script start less), on the same spec file
    text = _in_process(["plan", str(calls["plan-json"].spec)], calls["plan-json"].cwd, monkeypatch, capsys)
    assert text.returncode == 0, text.stderr
    jobs = json.loads(js.stdout)["jobs"]
    summary = re.search(r"(\d+) jobs — (\d+) intermediate, (\d+) target, (\d+) eval", text.stdout)
    reuse = re.search(r"intermediate trainings: (\d+) scheduled, (\d+) if trained per .* saves (\d+)",
                      text.stdout)
    assert summary and reuse, text.stdout
    total, n_inter, n_target, n_eval = map(int, summary.groups())
    scheduled, without, saved = map(int, reuse.groups())
    count = lambda s: sum(1 for j in jobs if j["stage"] == s)
    assert total == len(jobs)
    assert (n_inter, n_target, n_eval) == (count("intermediate"), count("target"), count("eval"))
    assert scheduled == n_inter
    assert without == sum(1 for j in jobs if j["stage"] != "intermediate" and j["intermediate"])
    assert saved == without - scheduled
    # the table lists the same ids as the JSON
    table_ids = set(re.findall(r"^([ite]-[0-9a-f]{12})\b", text.stdout, flags=re.M))
    assert table_ids == {j["id"] for j in jobs}


# --------------------------------------------------------------------------- memory per GPU

def _plan_outputs(tmp_path: Path, monkeypatch, capsys, change: dict) -> tuple[str, dict]:
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump({**good_spec(tmp_path), **change}, sort_keys=False))
    text = _in_process(["plan", spec.name], tmp_path, monkeypatch, capsys)
    js = _in_process(["plan", "--json", spec.name], tmp_path, monkeypatch, capsys)
    assert text.returncode == 0 and js.returncode == 0, (text.stderr, js.stderr)
    return text.stdout, json.loads(js.stdout)


def _expected_xl(**kwargs):
    from trainables.presets import PRESETS, estimate_for

    # good_spec's hyperparameters: batch_size 32 (default), max_length 128 (default), one worker
    return estimate_for(PRESETS[XL], num_gpus=1, micro_batch=32, seq_len=128, **kwargs)


def _memory_lines(text: str) -> list[str]:
    assert "memory per GPU" in text, text
    return text[text.index("memory per GPU"):].splitlines()[1:]


def test_plan_memory_xl_zero3_offload_fits_one_gpu(tmp_path, monkeypatch, capsys):
    from trainables.presets import GB

    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, XL_ZERO3_OFFLOAD)
    expected = _expected_xl(precision="bf16", stage=3, offload_optimizer="cpu", offload_param="cpu")
    (entry,) = out["memory"]        # one setting: intermediate and target jobs train alike
    assert entry["model"] == XL and entry["stages"] == ["intermediate", "target"]
    assert entry["jobs"] == sum(1 for j in out["jobs"] if j["stage"] != "eval")
    assert (entry["precision"], entry["zero_stage"], entry["offload_optimizer"], entry["offload_param"],
            entry["workers"], entry["micro_batch"], entry["max_length"]) == ("bf16", 3, "cpu", "cpu", 1, 32, 128)
    est = entry["estimate"]
    assert est["weights_gb"] == 0 and est["optimizer_states_gb"] == 0          # both offloaded
    for key, value in (("weights_gb", expected.weights), ("grads_gb", expected.grads),
                       ("optimizer_states_gb", expected.optimizer_states),
                       ("activations_gb", expected.activations), ("total_gb", expected.total),
                       ("cpu_gb", expected.cpu_bytes)):
        assert est[key] == pytest.approx(value / GB), key
    assert entry["fits"] is True and entry["gpu_memory_gb"] == 80 and entry["gpu_memory_assumed"] is True
    lines = _memory_lines(text)
    (line,) = [ln for ln in lines if ln.strip().startswith(XL)]
    assert f"{expected.total / GB:.1f} GB per GPU" in line and "ZeRO-3" in line and "micro-batch 32 x 128" in line
    assert f"activations {expected.activations / GB:.1f}" in line
    assert not any("warning" in ln for ln in lines)
    assert any("80 GB assumed" in ln and "resources.gpu_memory_gb" in ln for ln in lines)


def test_plan_memory_xl_plain_adamw_fp32_warns(tmp_path, monkeypatch, capsys):
    from trainables.presets import GB, PRESETS

    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, XL_PLAIN)
    expected = _expected_xl(precision="fp32", stage=0)
    assert expected.total > 80 * GB                                          # the premise
    (entry,) = out["memory"]
    assert (entry["precision"], entry["zero_stage"], entry["offload_optimizer"]) == ("fp32", 0, "none")
    assert entry["estimate"]["total_gb"] == pytest.approx(expected.total / GB)
    assert entry["estimate"]["weights_gb"] == pytest.approx(4 * PRESETS[XL].params / GB)  # fp32
    assert entry["fits"] is False
    lines = _memory_lines(text)
    warnings = [ln for ln in lines if "warning" in ln]
    assert len(warnings) == 1, lines
    assert f"{expected.total / GB:.1f} GB > 80 GB" in warnings[0] and "(assumed)" in warnings[0]


def test_plan_memory_uses_the_declared_gpu_memory(tmp_path, monkeypatch, capsys):
    from trainables.presets import GB

    expected = _expected_xl(precision="bf16", stage=3, offload_optimizer="cpu", offload_param="cpu")
    small = expected.total / GB * 0.9        # a GPU a bit too small for the offloaded XL
    change = {**XL_ZERO3_OFFLOAD, "resources": {"cpu": 1, "gpu": 1, "gpu_memory_gb": small}}
    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, change)
    (entry,) = out["memory"]
    assert entry["gpu_memory_gb"] == pytest.approx(small) and entry["gpu_memory_assumed"] is False
    assert entry["fits"] is False
    lines = _memory_lines(text)
    assert sum("warning" in ln for ln in lines) == 1
    assert not any("assumed" in ln for ln in lines)


def test_plan_memory_tiny_local_and_offline_models(tmp_path, monkeypatch, capsys):
    # tiny: no memory section at all
    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, {})
    assert "memory per GPU" not in text and out["memory"] == []
    # a local model directory: estimated from its config.json
    model = tmp_path / "my-encoder"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
        "vocab_size": 100, "max_position_embeddings": 40, "type_vocab_size": 1}))
    from trainables.presets import estimate_for, preset_for

    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, {"model": str(model), "resources": {"gpu": 1}})
    (entry,) = out["memory"]
    # precision auto on a GPU trial: bf16 autocast on the plain path (fp32 weights and AdamW)
    expected = estimate_for(preset_for(str(model)), precision="bf16", stage=0, micro_batch=32, seq_len=128,
                            autocast=True)
    assert entry["precision"] == "bf16"
    assert entry["estimate"]["weights_gb"] == pytest.approx(4 * preset_for(str(model)).params / 1e9)
    assert entry["params"] == preset_for(str(model)).params
    assert entry["estimate"]["total_gb"] == pytest.approx(expected.total / 1e9) and entry["fits"] is True
    # a hub id with no config.json in the local cache: a note, not a failure nor a download
    text, out = _plan_outputs(tmp_path, monkeypatch, capsys, {"model": "nobody-xstilts/not-a-model"})
    (entry,) = out["memory"]
    assert entry["estimate"] is None and entry["fits"] is None
    assert entry["note"] == "no estimate (config not available offline)"
    assert "nobody-xstilts/not-a-model" in text and "no estimate (config not available offline)" in text


def test_plan_memory_json_from_a_torch_free_driver(calls):
    """The console-script path of ``plan --json`` carries the estimate and imports no torch."""
    result = calls["plan-memory-torch-free"].result
    assert result.returncode == 0, result.stderr
    *plan_lines, marker = result.stdout.strip().splitlines()
    assert json.loads(marker) == {"heavy_modules": []}
    (entry,) = json.loads("\n".join(plan_lines))["memory"]
    assert entry["model"] == XL and entry["zero_stage"] == 3 and entry["fits"] is True


def test_plan_notes_cpu_offload_that_the_estimate_does_not_need(tmp_path, monkeypatch, capsys):
    from trainables.presets import GB, PRESETS, estimate_for

    on_gpu = estimate_for(PRESETS[XL], precision="bf16", stage=3, micro_batch=32, seq_len=128)
    for memory, noted in ((on_gpu.total / GB * 1.2, True), (on_gpu.total / GB * 0.8, False)):
        change = {**XL_ZERO3_OFFLOAD, "resources": {"cpu": 1, "gpu": 1, "gpu_memory_gb": memory}}
        text, out = _plan_outputs(tmp_path, monkeypatch, capsys, change)
        (entry,) = out["memory"]
        assert (entry["note"] is not None and "fits without CPU offload" in entry["note"]) is noted, entry
        assert (f"fits without CPU offload ({on_gpu.total / GB:.1f} GB per GPU)" in text) is noted

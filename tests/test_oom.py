"""OOM detection and the retry with a smaller micro-batch, through the real training loop."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch

from trainables.oom import is_out_of_memory, run_with_oom_retry, smaller_micro_batch
from trainables.steps import plain_step
from trainables.train import TrainSettings, train


@pytest.mark.parametrize("exc, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.1 GiB total capacity)"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB"), True),
    (MemoryError(), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x32 and 48x3)"), False),
    (ValueError("out of memory"), False),    # not an error type memory failures come as
    (KeyError("batch_size"), False),
])
def test_is_out_of_memory(exc: BaseException, expected: bool) -> None:
    assert is_out_of_memory(exc) is expected


def test_a_real_failed_host_allocation_counts_as_out_of_memory() -> None:
    """What this torch build raises when host memory runs out (2**60 bytes exceed any address space)."""
    with pytest.raises(RuntimeError) as failed:
        torch.empty(2**60, dtype=torch.uint8)
    assert is_out_of_memory(failed.value), str(failed.value)


def test_wrapped_out_of_memory() -> None:
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as inner:
            raise ValueError("trial failed") from inner
    except ValueError as outer:
        assert is_out_of_memory(outer)


@pytest.mark.parametrize("micro, floor, expected", [(16, 1, 8), (6, 1, 3), (3, 1, 1), (5, 1, 1), (1, 1, None),
                                                    (8, 4, 4), (4, 4, None), (6, 4, None)])
def test_smaller_micro_batch(micro: int, floor: int, expected: int | None) -> None:
    assert smaller_micro_batch(micro, floor) == expected


# ---------------------------------------------------------------- through train()

VOCAB = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(40)]


def _tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def _model():
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from trainables.families.classification import ClassificationHead
    from trainables.model import MultiTaskModel

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=40, pad_token_id=0,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return MultiTaskModel(XLMRobertaModel(config, add_pooling_layer=False), {"cls": ClassificationHead(32, 2, 0.0)})


def _features(n: int = 32) -> datasets.Dataset:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, len(VOCAB), (n, 6), generator=g)
    ids[:, 0] = 1
    return datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": [[1] * 6] * n,
                                       "labels": (ids[:, 1] % 2).tolist()})


class MemoryLimitedStep:
    """A training step that runs out of 'memory' above ``limit`` rows, as a GPU would."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def __call__(self, model, task, batch, backward) -> float:
        rows = batch["input_ids"].shape[0]
        self.sizes.append(rows)
        if rows > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {rows} rows")
        return plain_step(model, task, batch, backward)


def _trial(step: MemoryLimitedStep, features, tokenizer):
    task = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))

    def run(hp: dict) -> dict:
        settings = TrainSettings(learning_rate=1e-3, batch_size=hp["batch_size"], eval_batch_size=8, epochs=2,
                                 max_length=8, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0,
                                 grad_accumulation=hp["grad_accumulation"], max_steps=None, seed=1)
        epochs: list[dict] = []
        summary = train(_model(), {"cls": task}, {"cls": features}, tokenizer, settings, dev_score=lambda: 0.0,
                        on_epoch_end=lambda e, m, i, s: epochs.append(m), step_fn=step)
        return {**summary, "epochs": epochs, "hp": hp}

    return run


def test_retry_halves_micro_batch_and_keeps_effective_batch() -> None:
    features, tokenizer = _features(32), _tokenizer()
    step = MemoryLimitedStep(limit=4)
    retries: list[tuple[dict, dict]] = []
    result = run_with_oom_retry(_trial(step, features, tokenizer), {"batch_size": 16, "grad_accumulation": 1,
                                                                    "learning_rate": 1e-3},
                                on_retry=lambda record, hp: retries.append((record, hp)))
    assert [(r["old_batch_size"], r["old_grad_accumulation"], r["new_batch_size"], r["new_grad_accumulation"])
            for r, _ in retries] == [(16, 1, 8, 2), (8, 2, 4, 4)]
    assert retries[0][0]["error"].startswith("CUDA out of memory")
    assert retries[1][1] == {"batch_size": 4, "grad_accumulation": 4, "learning_rate": 1e-3}
    assert result["hp"]["batch_size"] * result["hp"]["grad_accumulation"] == 16
    # 32 examples, micro 4 -> 8 micro-batches per epoch, an update every 4: 2 per epoch, 4 in all
    assert result["steps"] == 2 * math.ceil(32 / 16) == 4
    assert [m["train/steps"] for m in result["epochs"]] == [2, 4]
    assert all(math.isfinite(m["train/loss"]) for m in result["epochs"])
    assert step.sizes[:2] == [16, 8] and set(step.sizes[2:]) == {4}


def test_retry_gives_up_at_the_floor() -> None:
    features, tokenizer = _features(16), _tokenizer()
    retries: list[dict] = []
    with pytest.raises(torch.OutOfMemoryError, match="for 4 rows"):
        run_with_oom_retry(_trial(MemoryLimitedStep(limit=2), features, tokenizer),
                           {"batch_size": 16, "grad_accumulation": 2}, floor=4,
                           on_retry=lambda record, hp: retries.append(record))
    assert [(r["new_batch_size"], r["new_grad_accumulation"]) for r in retries] == [(8, 4), (4, 8)]


def test_other_errors_are_not_retried() -> None:
    calls: list[dict] = []

    def broken(hp: dict) -> None:
        calls.append(hp)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        run_with_oom_retry(broken, {"batch_size": 16, "grad_accumulation": 1}, on_retry=lambda r, h: calls.append(r))
    assert len(calls) == 1


def test_out_of_memory_of_one_rank_in_a_ray_train_group() -> None:
    from ray.train.v2.api.exceptions import WorkerGroupError

    oom = WorkerGroupError("rank 1 failed", {0: RuntimeError("gloo: connection closed by peer"),
                                             1: torch.OutOfMemoryError("CUDA out of memory")})
    assert is_out_of_memory(oom)
    assert not is_out_of_memory(WorkerGroupError("rank 1 failed", {1: ValueError("bad shape")}))


# ---------------------------------------------------------------- what MLflow records of a retry

def test_a_retried_trial_leaves_its_micro_batch_changes_in_the_job_run(tmp_path, toy_root, small_model):
    """The driver's record of a job whose selected trial needed two OOM retries: the smaller
    micro-batch it ran with, how many retries, and each change, on the job's MLflow run."""
    import mlflow

    from sweep.plan import build_plan
    from sweep.run import StudyRunner
    from sweep.spec import load_spec
    from tests.conftest import write_spec
    from trainables.records import write_json_atomic

    spec = load_spec(write_spec(tmp_path / "study.yaml", toy_root, small_model))
    plan = build_plan(spec)
    job = next(j for j in plan.jobs if j.stage == "target")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runner = StudyRunner(spec, plan, tracking_uri=uri)
    runner.tracker.start_study(plan, None, {})
    retried, plain = tmp_path / "t0", tmp_path / "t1"
    retries = [{"attempt": 1, "old_batch_size": 16, "old_grad_accumulation": 1, "new_batch_size": 8,
                "new_grad_accumulation": 2, "error": "CUDA out of memory"},
               {"attempt": 2, "old_batch_size": 8, "old_grad_accumulation": 2, "new_batch_size": 4,
                "new_grad_accumulation": 4, "error": "CUDA out of memory"}]
    for folder, score, hparams, oom in ((retried, 0.7, {"batch_size": 4, "grad_accumulation": 4}, retries),
                                        (plain, 0.6, {"batch_size": 16, "grad_accumulation": 1}, [])):
        folder.mkdir()
        metrics = {spec.search.metric: score, **({"train/oom_retries": float(len(oom))} if oom else {})}
        write_json_atomic(folder / "result.json", {"trial_id": folder.name, "metrics": metrics, "hparams": hparams,
                                                   "oom_retries": oom, "model_dir": None})
    Path(runner.paths.job_file(job.id)).parent.mkdir(parents=True)  # made when its trials start
    runner._finish_job(job, [str(retried), str(plain)], nested=True)

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                f"tags.`xstilts.job_id` = '{job.id}'")
    assert run.data.tags["xstilts.best_trial"] == "t0"
    assert run.data.tags["xstilts.oom_retries"] == "16x1 -> 8x2; 8x2 -> 4x4"
    assert (run.data.params["selected.batch_size"], run.data.params["selected.grad_accumulation"]) == ("4", "4")
    assert run.data.metrics["train/oom_retries"] == 2

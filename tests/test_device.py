"""The device rule, precision, the input pipeline and where a trial really computes (CPU)."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from trainables.device import Precision, Throughput, batch_tokens, pick_device, resolve_precision
from trainables.pipeline import prefetched, training_batches

HP = dict(learning_rate=1e-3, batch_size=16, eval_batch_size=64, epochs=2, max_length=48,
          warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1, max_steps=None)


# ---------------------------------------------------------------- the device rule

@pytest.mark.parametrize("assigned, cuda, train_device, expected", [
    (None, 0, None, "cpu"),            # outside Ray, no CUDA
    (None, 2, None, "cuda:0"),         # outside Ray (a benchmark on a GPU box)
    ([], 8, None, "cpu"),              # a Ray trial that reserved no GPU, on a GPU node: not its GPU
    (["3"], 1, None, "cuda:0"),        # Ray narrowed CUDA_VISIBLE_DEVICES to GPU 3: visible as cuda:0
    ([0.5], 1, None, "cuda:0"),        # a fractional GPU share
    ([], 0, "cuda:5", "cuda:5"),       # a Ray Train rank: its local device, whatever the rest says
    (None, 0, "cpu", "cpu"),
])
def test_each_ray_assignment_picks_its_device(assigned, cuda, train_device, expected):
    assert pick_device(assigned_gpus=assigned, cuda_devices=cuda, train_device=train_device) == torch.device(expected)


def test_a_reserved_gpu_that_torch_cannot_see_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="trainables.device"):
        assert pick_device(assigned_gpus=[0], cuda_devices=0) == torch.device("cpu")
    assert "reserved GPU(s) [0] but torch sees no CUDA device" in caplog.text


def test_precision_auto_and_checks_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == Precision("fp32", "cpu")
    assert resolve_precision("bf16", cpu).dtype is torch.bfloat16
    with pytest.raises(ValueError) as err:
        resolve_precision("fp16", cpu)
    assert str(err.value) == ("precision: fp16 needs a CUDA GPU (this trial runs on cpu); use bf16 or fp32")
    with pytest.raises(ValueError, match="precision: must be one of"):
        resolve_precision("fp8", cpu)


def test_bf16_autocast_on_the_cpu_runs_the_encoder_in_16_bit_and_heads_in_fp32(small_model):
    from trainables.model import MultiTaskModel, build_model

    model, tokenizer = build_model(str(small_model), [])
    seen = {}

    def record(_module, _inputs, output):
        seen["dtype"] = (output[0] if isinstance(output, tuple) else output).dtype

    query = next(m for n, m in model.encoder.named_modules() if n.endswith("layer.0.attention.self.query"))
    query.register_forward_hook(record)             # a matmul: autocast runs it in bf16
    batch = tokenizer(["a b c", "d e"], padding=True, return_tensors="pt")
    model.precision = Precision("bf16", "cpu")
    hidden = MultiTaskModel.encode(model, batch)
    assert seen["dtype"] is torch.bfloat16 and hidden.dtype is torch.float32


# ---------------------------------------------------------------- the input pipeline

def test_prefetched_keeps_order_raises_and_stops_early():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        list(prefetched(failing()))
    produced = []

    def counting():
        for i in range(10_000):
            produced.append(i)
            yield i

    for i in prefetched(counting(), depth=2):
        if i == 3:
            break
    assert len(produced) < 20                         # the producer stopped soon after the consumer
    pinned = list(prefetched(iter([("t", {"x": torch.ones(2)})]), pin_memory=False))
    assert pinned[0][1]["x"].tolist() == [1.0, 1.0]
    assert training_batches([1, 2], torch.device("cpu")) == [1, 2]   # the CPU path is the iterator itself


def test_tokens_and_throughput_count_real_tokens():
    batch = {"input_ids": torch.ones(2, 4), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
             "query_attention_mask": torch.tensor([[1, 0]]), "labels": torch.tensor([0, 1])}
    assert batch_tokens(batch) == 6
    meter = Throughput(torch.device("cpu"))
    meter.start()
    meter.add(batch)
    assert meter.metrics(2.0) == {"train/tokens_per_s": 3.0}         # no GPU memory on the CPU


# ---------------------------------------------------------------- a trial on its device

def _target(tmp_path, toy_root, model, **fields):
    options = {"toy_xnli": {"data_dir": str(toy_root)}}
    return {"trial_id": "t", "job_id": "j", "stage": "target", "model": str(model), "tasks": ["toy_xnli"],
            "languages": ["en", "xs"], "seed": 7, "hparams": HP, "task_options": options,
            "output_dir": str(tmp_path / "out"), "num_threads": 1, **fields}


def test_a_trial_trains_selects_and_evaluates_on_its_device_without_a_reload(tmp_path, toy_root, small_model,
                                                                             monkeypatch):
    import trainables.trial as trial

    builds: list[str] = []
    real_build = trial.build_model
    monkeypatch.setattr(trial, "build_model", lambda start, tasks: (builds.append(start), real_build(start, tasks))[1])
    reports: list[dict] = []
    result = trial.run_trial(_target(tmp_path, toy_root, small_model), report=reports.append)
    assert builds == [str(small_model)]               # built once: never reloaded onto the CPU to evaluate
    assert result["device"].startswith("cpu (") and result["precision"] == "fp32"
    assert result["eval_device"] == "cpu"             # where the evaluated model's parameters were
    assert result["evaluated_by"] == {"en": 0, "xs": 0}
    epochs = [r for r in reports if "epoch" in r]
    assert all(r["train/tokens_per_s"] > 0 and "train/peak_gpu_mem_gb" not in r for r in epochs)


def test_selected_weights_are_loaded_in_place_when_a_later_epoch_was_worse(tmp_path, small_model):
    from trainables.model import build_model, load_saved_weights, save_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    task = build_task("toy_xnli", TaskOptions())
    model, tokenizer = build_model(str(small_model), [task])
    save_model(model, tokenizer, tmp_path / "best", {})
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)                               # a "later epoch" that moved every weight
    same = id(next(model.parameters()))
    load_saved_weights(model, tmp_path / "best")
    assert id(next(model.parameters())) == same       # in place: the same tensors, on their device
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())


def test_bf16_plain_path_trains_close_to_fp32_on_the_cpu(tmp_path, toy_root, small_model):
    from trainables.trial import run_trial

    runs = {}
    for precision in ("fp32", "bf16"):
        reports: list[dict] = []
        result = run_trial(_target(tmp_path / precision, toy_root, small_model, hparams={**HP, "epochs": 3},
                                   settings={"precision": precision}), report=reports.append)
        runs[precision] = ([r["train/loss"] for r in reports if "epoch" in r], result)
    fp32, bf16 = runs["fp32"][0], runs["bf16"][0]
    assert runs["bf16"][1]["precision"] == "bf16"
    assert bf16[-1] < bf16[0]                                       # it learns
    assert all(math.isclose(a, b, rel_tol=0.1) for a, b in zip(fp32, bf16)), (fp32, bf16)
    assert bf16 != fp32                                             # and really ran in 16 bit


def test_fp16_on_the_cpu_is_refused_in_one_line(tmp_path, toy_root, small_model):
    from trainables.trial import run_trial

    with pytest.raises(ValueError) as err:
        run_trial(_target(tmp_path, toy_root, small_model, settings={"precision": "fp16"}))
    assert "\n" not in str(err.value) and "fp16 needs a CUDA GPU" in str(err.value)
    assert (tmp_path / "out" / "error.txt").read_text().startswith("ValueError: precision: fp16")


@pytest.mark.parametrize("task_name", ["toy_xnli", "toy_pos"])
def test_length_sorted_evaluation_batches_give_each_example_its_own_prediction(task_name, toy_root, small_model):
    """Evaluation batches run longest first; predictions come back in the examples' own order,
    equal to evaluating one example at a time (no padding at all)."""
    from trainables.families import get_family
    from trainables.model import build_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    task = build_task(task_name, TaskOptions.from_dict({"data_dir": str(toy_root)}, "~/.cache/xstilts"))
    model, tokenizer = build_model(str(small_model), [task])
    model.eval()
    family = get_family(task.info.family)
    data = task.load("test", "xs").select(range(40))
    if task_name == "toy_xnli":
        features = family.featurize(task, data, tokenizer, 48)
        assert len({len(x) for x in features["input_ids"]}) > 1          # lengths differ: an order to sort

        def predict(batch_size):
            return [int(p) for p in family.predict(model, task, features, tokenizer, batch_size)]
    else:
        def predict(batch_size):
            return family.predict(task, model, data, tokenizer, batch_size=batch_size, max_length=48)
    batched = predict(16)
    assert len(batched) == 40 and batched == predict(1)


@pytest.mark.parametrize("task_name", ["toy_xnli", "toy_pos"])
def test_numpy_padding_equals_the_hugging_face_collators(task_name, toy_root, small_model):
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    from trainables.families import get_family
    from trainables.model import build_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions

    task = build_task(task_name, TaskOptions.from_dict({"data_dir": str(toy_root)}, "~/.cache/xstilts"))
    _, tokenizer = build_model(str(small_model), [task])
    family = get_family(task.info.family)
    features = family.featurize(task, task.load_train().select(range(24)), tokenizer, 48)
    rows = [features[i] for i in range(len(features))]
    reference = (DataCollatorWithPadding(tokenizer, return_tensors="pt") if task_name == "toy_xnli" else
                 DataCollatorForTokenClassification(tokenizer, label_pad_token_id=-100, return_tensors="pt"))(rows)
    ours = family.collator(tokenizer)(rows)
    assert set(ours) == set(reference)
    assert all(torch.equal(ours[k], reference[k]) and ours[k].dtype == reference[k].dtype for k in ours)


def test_validation_every_n_steps_with_patience_stops_early_and_keeps_the_best(tmp_path, toy_root, small_model):
    """jiant's schedule: validate every N steps on a dev subset; stop after `patience`
    validations without a better score; the best validation's weights are the ones evaluated."""
    import json

    from trainables.trial import run_trial

    reports: list[dict] = []
    hp = {**HP, "epochs": 6, "learning_rate": 3e-3, "eval_every_steps": 3, "eval_examples": 20, "patience": 2}
    result = run_trial(_target(tmp_path, toy_root, small_model, hparams=hp), report=reports.append)
    epochs = [r for r in reports if "epoch" in r]
    steps_per_epoch = -(-240 // 16)                                     # 240 training rows, batch 16
    assert len(epochs) < 6 and epochs[-1]["train/steps"] < 6 * steps_per_epoch   # stopped early
    saved = json.loads((tmp_path / "out" / "model" / "xstilts.json").read_text())
    assert saved["dev_score"] == result["metrics"]["dev/score"] == max(r["dev/best"] for r in epochs)


def test_examples_cap_mixes_multi_task_entries_only(tmp_path, toy_root, small_model):
    from trainables.trial import run_trial

    options = {t: {"data_dir": str(toy_root), "examples_cap": 32} for t in ("toy_xnli", "toy_chunk")}
    alone = run_trial(_target(tmp_path / "alone", toy_root, small_model, task_options=options,
                              hparams={**HP, "epochs": 1}))
    assert alone["steps"] == -(-240 // 16)                             # all 240 rows, not 32
    both = run_trial({**_target(tmp_path / "both", toy_root, small_model, task_options=options,
                                hparams={**HP, "epochs": 1}),
                      "stage": "intermediate", "tasks": ["toy_xnli", "toy_chunk"], "languages": []})
    assert both["steps"] == 2 * (32 // 16)                              # 32 rows of each task


def test_a_multi_task_trial_featurizes_each_task_at_its_own_length(tmp_path, toy_root, small_model, monkeypatch):
    import trainables.trial as trial

    seen: dict[str, set] = {}
    real = trial.training.get_family

    class Recording:
        def __init__(self, family):
            self.family = family

        def __getattr__(self, name):
            return getattr(self.family, name)

        def featurize(self, task, data, tokenizer, max_length):
            seen.setdefault(task.name, set()).add(max_length)
            return self.family.featurize(task, data, tokenizer, max_length)

    monkeypatch.setattr(trial.training, "get_family", lambda name: Recording(real(name)))
    options = {t: {"data_dir": str(toy_root)} for t in ("toy_chunk", "toy_paraphrase")}
    trial.run_trial({**_target(tmp_path, toy_root, small_model, task_options=options, hparams={**HP, "epochs": 1}),
                     "stage": "intermediate", "tasks": ["toy_chunk", "toy_paraphrase"], "languages": [],
                     "settings": {"task_max_length": {"toy_paraphrase": 24}}})
    assert seen == {"toy_chunk": {48}, "toy_paraphrase": {24}}


def test_a_mid_epoch_resume_state_continues_as_if_never_stopped(toy_root, small_model):
    """Resume states every 4 optimizer steps (issue 15): training resumed from one taken inside
    an epoch skips the batches it trained, restores the random generators (dropout), and ends
    with the same weights and epoch losses as the run that never stopped."""
    import copy
    import dataclasses

    from trainables.families import get_family
    from trainables.model import build_model
    from trainables.tasks import build_task
    from trainables.tasks.base import TaskOptions
    from trainables.train import TrainSettings, seed_everything, train

    task = build_task("toy_xnli", TaskOptions.from_dict({"data_dir": str(toy_root)}, "~/.cache/xstilts"))
    settings = dataclasses.replace(TrainSettings.from_dict({**HP, "epochs": 2}, seed=3), checkpoint_every_steps=4)

    def run(resume=None):
        seed_everything(3)
        model, tokenizer = build_model(str(small_model), [task])
        features = {"toy_xnli": get_family("classification").featurize(task, task.load_train(), tokenizer, 48)}
        states, epochs = [], []
        train(model, {"toy_xnli": task}, features, tokenizer, settings, dev_score=lambda: 0.5,
              on_epoch_end=lambda e, m, i, s: epochs.append(m), resume=resume,
              on_checkpoint=lambda state: states.append(copy.deepcopy(state)))
        return model, states, epochs

    reference, states, epochs = run()
    assert [s["step"] for s in states] == [4, 8, 12, 16, 20, 24, 28]  # 15 steps an epoch; none at its end (30)
    mid = states[5]                                                   # epoch 2, step 24
    assert mid["partial"]["epoch"] == 1 and mid["partial"]["micro"] == 9
    resumed, _, after = run(resume=mid)
    assert [m["epoch"] for m in after] == [2]
    assert after[0]["train/loss"] == pytest.approx(epochs[1]["train/loss"], abs=1e-6)
    assert after[0]["train/steps"] == epochs[1]["train/steps"] == 30
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_trial_killed_mid_epoch_resumes_from_its_last_steps(tmp_path, toy_root, small_model, monkeypatch):
    import trainables.trial as trial

    settings = {"checkpoint_every_steps": 5}
    reference = trial.run_trial(_target(tmp_path / "ref", toy_root, small_model, settings=settings))
    real_train = trial.training.train

    def killed_after_two_states(*args, on_checkpoint, **kwargs):
        seen = []

        def checkpoint(state):
            on_checkpoint(state)
            seen.append(state["step"])
            if len(seen) == 2:
                raise KeyboardInterrupt        # the node is lost right after the state at step 10

        return real_train(*args, on_checkpoint=checkpoint, **kwargs)

    monkeypatch.setattr(trial.training, "train", killed_after_two_states)
    config = _target(tmp_path / "killed", toy_root, small_model, settings=settings)
    with pytest.raises(KeyboardInterrupt):
        trial.run_trial(config)
    state = torch.load(tmp_path / "killed" / "out" / "resume" / "state.pt", weights_only=False)
    assert state["step"] == 10 and state["partial"] == {**state["partial"], "epoch": 0, "micro": 10}
    monkeypatch.setattr(trial.training, "train", real_train)
    reports: list[dict] = []
    resumed = trial.run_trial(config, report=reports.append)
    assert [r["epoch"] for r in reports if "epoch" in r] == [1, 2]   # epoch 1 finished from step 10 on
    assert resumed["metrics"] == pytest.approx(reference["metrics"], abs=1e-6)


def test_a_damaged_resume_state_restarts_the_trial_from_scratch(tmp_path, toy_root, small_model, caplog):
    """A state.pt truncated by a full disk (issue 14): one warning naming it, the trial starts
    over, and its numbers equal a clean run's."""
    from trainables.trial import run_trial

    clean = run_trial(_target(tmp_path / "clean", toy_root, small_model))

    def stop_after_first_epoch(metrics):
        if metrics.get("epoch") == 1:
            raise KeyboardInterrupt

    config = _target(tmp_path / "damaged", toy_root, small_model)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, report=stop_after_first_epoch)
    state = tmp_path / "damaged" / "out" / "resume" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="trainables.trial"):
        again = run_trial(config)
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(state) in warnings[0] and "starts from scratch" in warnings[0]
    assert again["resumed_from_epoch"] is None
    assert again["metrics"] == pytest.approx(clean["metrics"], abs=1e-6)

"""Adversarial training steps on a tiny random XLM-R: bounds, gradients, cost, configs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel

from trainables.adversarial import build_step, method_names, validate_adversarial
from trainables.adversarial.base import example_norms, symmetric_kl
from trainables.families.classification import ClassificationHead
from trainables.model import MultiTaskModel
from trainables.steps import plain_step

CLS = SimpleNamespace(name="cls", info=SimpleNamespace(family="classification"))
TAG = SimpleNamespace(name="tag", info=SimpleNamespace(family="tagging"))

CONFIGS = {
    "fgm": {"method": "fgm", "epsilon": 0.5},
    "fgm_linf": {"method": "fgm", "epsilon": 0.01, "norm": "linf"},
    "pgd": {"method": "pgd", "epsilon": 0.5, "step_size": 0.3, "steps": 3},
    "pgd_linf": {"method": "pgd", "epsilon": 0.01, "step_size": 0.004, "steps": 4, "norm": "linf"},
    "freelb": {"method": "freelb", "adv_steps": 3, "adv_lr": 0.3, "init_mag": 0.2, "max_norm": 0.4},
    "freelb_linf": {"method": "freelb", "adv_steps": 2, "adv_lr": 0.01, "init_mag": 0.01,
                    "max_norm": 0.005, "norm": "linf"},
    "smart": {"method": "smart", "noise_var": 1e-4, "step_size": 1e-3, "radius": 0.05},
    "r3f": {"method": "r3f", "eps": 0.05},
    "r3f_normal": {"method": "r3f", "eps": 0.05, "noise": "normal"},
}


def make_model(seed: int = 0, dropout: float = 0.0) -> MultiTaskModel:
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                              hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                              pad_token_id=1)
    encoder = XLMRobertaModel(config, add_pooling_layer=False)
    heads = {"cls": ClassificationHead(32, 3, dropout),
             "tag": nn.Sequential(nn.Dropout(dropout), nn.Linear(32, 5))}
    return MultiTaskModel(encoder, heads)


def make_batch(n: int = 6, length: int = 12, seed: int = 1, tagging: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, length), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(n, length, dtype=torch.long)
    for i in range(n):  # varied padding
        real = length - (i % 4)
        ids[i, real:] = 1
        mask[i, real:] = 0
    if tagging:
        labels = torch.randint(0, 5, (n, length), generator=g)
        labels[:, 0] = -100
        labels[mask == 0] = -100
        labels[:, 3] = -100  # a non-first sub-word
    else:
        labels = torch.randint(0, 3, (n,), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run(config, model, task, batch, backward=None, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    step = build_step(config)
    value = step(model, task, batch, backward or (lambda loss: loss.backward()))
    return step, value, grads(model)


def record_deltas(model: MultiTaskModel) -> list[torch.Tensor]:
    """Wrap our own ``perturb_embeddings`` to see what each method adds to the embeddings."""
    deltas: list[torch.Tensor] = []
    original = model.perturb_embeddings

    def observed(fn):
        def hook(out):
            new = fn(out)
            deltas.append((new - out).detach())
            return new
        return original(hook)

    model.perturb_embeddings = observed
    return deltas


def assert_close_grads(a: dict, b: dict, rtol=1e-4, atol=1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_perturbation_respects_its_bound(key):
    config = CONFIGS[key]
    model, batch = make_model(), make_batch()
    deltas = record_deltas(model)
    step, value, _ = run(config, model, CLS, batch)
    assert math.isfinite(value) and deltas
    padding = batch["attention_mask"] == 0
    s = step.settings
    for delta in deltas:
        assert torch.all(delta[padding] == 0), "padding positions must not be perturbed"
        if key.startswith(("fgm", "pgd")):
            assert example_norms(delta, s.norm).max() <= s.epsilon * (1 + 1e-5)
        elif key.startswith("freelb"):
            assert example_norms(delta, s.norm).max() <= max(s.max_norm, s.init_mag) * (1 + 1e-5)
        elif key == "smart":
            assert delta.abs().amax(-1).max() <= s.radius * (1 + 1e-5)
        elif key == "r3f":
            assert 0 < delta.abs().max() <= s.eps
        else:  # normal noise: std eps over the real positions
            std = delta[~padding].std()
            assert abs(float(std) - s.eps) < 0.1 * s.eps
    if key.startswith(("fgm", "pgd")):  # the clean pass is unperturbed
        assert torch.all(deltas[0] == 0) and len(deltas) == (2 if key.startswith("fgm") else s.steps + 1)
    if key.startswith(("fgm", "pgd", "freelb")):  # ascent moved the perturbation to the boundary
        bound = s.max_norm if key.startswith("freelb") else s.epsilon
        assert torch.allclose(example_norms(deltas[-1], s.norm), torch.tensor(bound), rtol=1e-3)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_optimizer_step_changes_parameters(key):
    model, batch = make_model(), make_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _, value, g = run(CONFIGS[key], model, CLS, batch)
    assert math.isfinite(value)
    assert all(torch.isfinite(t).all() for t in g.values())
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("encoder.") for n in changed) and any(n.startswith("heads.cls") for n in changed)


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_returns_clean_loss_and_differs_from_plain(key):
    model, batch = make_model(), make_batch()
    _, plain_value, plain_grads = run(None, model, CLS, batch)
    step, value, g = run(CONFIGS[key], model, CLS, batch)
    if not key.startswith("freelb"):  # FreeLB's first pass starts from random noise here
        assert value == pytest.approx(plain_value, rel=1e-6)
    differs = any(not torch.allclose(g[n], plain_grads[n], rtol=1e-3, atol=1e-7) for n in g)
    assert differs, "the adversarial term must change the gradient"


def test_freelb_one_step_without_init_is_the_plain_step():
    model, batch = make_model(), make_batch()
    _, plain_value, plain_grads = run(None, model, CLS, batch)
    _, value, g = run({"method": "freelb", "adv_steps": 1, "init_mag": 0}, model, CLS, batch)
    assert value == pytest.approx(plain_value, rel=1e-6)
    assert_close_grads(g, plain_grads)


@pytest.mark.parametrize("config", [{"method": "smart", "noise_var": 0.0},
                                    {"method": "r3f", "eps": 0.0},
                                    {"method": "r3f", "eps": 0.0, "noise": "normal"}])
def test_regulariser_is_zero_without_noise(config):
    model, batch = make_model(), make_batch()
    _, _, plain_grads = run(None, model, CLS, batch)
    step, _, g = run(config, model, CLS, batch)
    assert step.last["regulariser"] == 0.0
    assert_close_grads(g, plain_grads)
    noisy = dict(config, **({"noise_var": 1e-2, "radius": 0.5} if config["method"] == "smart"
                            else {"eps": 0.5}))
    step, _, _ = run(noisy, model, CLS, batch)
    assert step.last["regulariser"] > 0


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_tagging_head(key):
    model, batch = make_model(), make_batch(tagging=True)
    deltas = record_deltas(model)
    _, value, g = run(CONFIGS[key], model, TAG, batch)
    assert math.isfinite(value)
    assert deltas and all(torch.all(d[batch["attention_mask"] == 0] == 0) for d in deltas)
    assert "heads.tag.1.weight" in g and any(k.startswith("encoder.") for k in g)
    assert all(torch.isfinite(t).all() for t in g.values())


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_backward_closure_scales_every_parameter_gradient(key):
    """Accumulation scales inside ``backward``: a method that called ``loss.backward()`` itself
    (or forgot a loss) would not scale by exactly one half."""
    model, batch = make_model(), make_batch()
    _, _, full = run(CONFIGS[key], model, CLS, batch)
    _, _, half = run(CONFIGS[key], model, CLS, batch, backward=lambda loss: (loss / 2).backward())
    assert_close_grads(half, {n: t / 2 for n, t in full.items()})


@pytest.mark.parametrize("config", [CONFIGS["fgm"], CONFIGS["pgd"], CONFIGS["pgd_linf"],
                                    {"method": "freelb", "adv_steps": 3, "adv_lr": 0.3, "max_norm": 0.4}])
def test_accumulating_two_halves_equals_the_full_batch(config):
    """Per-example norms make the perturbation independent of the batch split."""
    model, batch = make_model(), make_batch(n=6)
    _, _, full = run(config, model, CLS, batch)
    model.zero_grad(set_to_none=True)
    step = build_step(config)
    for part in (slice(0, 3), slice(3, 6)):
        step(model, CLS, {k: v[part] for k, v in batch.items()}, lambda loss: (loss / 2).backward())
    assert_close_grads(grads(model), full, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("config,passes", [
    ({"method": "fgm"}, 2), ({"method": "pgd", "steps": 3}, 4),
    ({"method": "freelb", "adv_steps": 4}, 4), ({"method": "smart", "ascent_steps": 2}, 4),
    ({"method": "r3f"}, 2), (None, 1)])
def test_number_of_forward_passes(config, passes):
    model, batch = make_model(), make_batch()
    count = []
    handle = model.encoder.register_forward_hook(lambda *_: count.append(1))
    run(config, model, CLS, batch)
    handle.remove()
    assert len(count) == passes


def test_symmetric_kl_by_hand():
    p = torch.log(torch.tensor([[0.5, 0.5]]))
    q = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = (0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)
                + 0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert float(symmetric_kl(p, q)) == pytest.approx(expected, rel=1e-6)
    # averaged over rows; identical rows contribute zero
    two = symmetric_kl(torch.cat([p, p]), torch.cat([q, p]))
    assert float(two) == pytest.approx(expected / 2, rel=1e-6)
    # tagging: (B, L, T) with -100 positions left out
    tp = torch.stack([torch.cat([p, p, p])])  # (1, 3, 2)
    tq = torch.stack([torch.cat([q, p, q])])
    labels = torch.tensor([[0, 1, -100]])
    assert float(symmetric_kl(tp, tq, {"labels": labels})) == pytest.approx(expected / 2, rel=1e-6)
    # QA: a tuple of (B, L) start / end logits, averaged over the two
    assert float(symmetric_kl((p, p), (q, p))) == pytest.approx(expected / 2, rel=1e-6)


def test_build_step_and_names():
    assert build_step(None) is plain_step
    assert build_step({"method": "none"}) is plain_step
    assert method_names()[0] == "none"
    assert {"fgm", "pgd", "freelb", "smart", "r3f"} <= set(method_names())
    filled = validate_adversarial({"method": "freelb", "adv_steps": 2, "adv_lr": "1e-1"})
    assert filled == {"method": "freelb", "adv_steps": 2, "adv_lr": 0.1, "init_mag": 0.0,
                      "max_norm": 0.0, "norm": "l2"}


@pytest.mark.parametrize("config,start,hint", [
    ({"method": "frelb"}, "method:", "did you mean 'freelb'"),
    ({"adv_steps": 2}, "method:", "missing"),
    ({"method": "freelb", "adv_step": 2}, "adv_step:", "did you mean 'adv_steps'"),
    ({"method": "freelb", "adv_steps": 0}, "adv_steps:", ">= 1"),
    ({"method": "freelb", "adv_steps": 2.5}, "adv_steps:", "integer"),
    ({"method": "pgd", "norm": "l1"}, "norm:", "l2"),
    ({"method": "fgm", "epsilon": -1}, "epsilon:", "> 0"),
    ({"method": "smart", "noise_var": "lots"}, "noise_var:", "number"),
    ({"method": "r3f", "noise": "gaussian"}, "noise:", "uniform"),
    ({"method": "r3f", "lambda": 1.0}, "lambda:", "unknown"),
    ({"method": "none", "epsilon": 1.0}, "epsilon:", "no settings"),
])
def test_invalid_configs_name_the_field(config, start, hint):
    with pytest.raises(ValueError) as err:
        validate_adversarial(config)
    assert str(err.value).startswith(start) and hint in str(err.value)
    with pytest.raises(ValueError):
        build_step(config)


# --- a family whose step calls the encoder more than once: the dual encoder ------------------

DUAL = SimpleNamespace(name="dual", info=SimpleNamespace(family="dual_encoder"))


def make_dual_batch(n: int = 4, q_length: int = 7, c_length: int = 11, seed: int = 2) -> dict:
    """Queries and candidates padded separately, to different lengths (as the collator does)."""
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for side, length, shift in (("q", q_length, 0), ("c", c_length, 1)):
        ids = torch.randint(5, 100, (n, length), generator=g)
        ids[:, 0] = 0
        mask = torch.ones(n, length, dtype=torch.long)
        for i in range(n):
            real = length - ((i + shift) % 3)
            ids[i, real:], mask[i, real:] = 1, 0
        batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"] = ids, mask
    return batch


def bound_of(key: str, s) -> tuple[str, float]:
    if key.startswith(("fgm", "pgd")):
        return s.norm, s.epsilon
    if key.startswith("freelb"):
        return s.norm, max(s.max_norm, s.init_mag)
    if key == "smart":
        return "position_linf", s.radius
    if key == "r3f":
        return "linf", s.eps
    return "std", s.eps  # normal noise: no hard bound, standard deviation eps


@pytest.mark.parametrize("lengths", [(7, 11), (9, 9)], ids=["different_padding", "same_shape"])
@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_dual_encoder_batch(key, lengths):
    from trainables.families.retrieval import DualEncoderHead

    model = make_model()
    model.heads["dual"] = DualEncoderHead(0.05)
    batch = make_dual_batch(q_length=lengths[0], c_length=lengths[1])
    deltas = record_deltas(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step, value, g = run(CONFIGS[key], model, DUAL, batch)
    assert math.isfinite(value) and all(torch.isfinite(t).all() for t in g.values())
    # every perturbed pass perturbs both encoder calls, queries first, each with its own padding
    assert deltas and len(deltas) % 2 == 0
    norm, bound = bound_of(key, step.settings)
    for i, delta in enumerate(deltas):
        mask = batch["q_attention_mask" if i % 2 == 0 else "c_attention_mask"]
        assert delta.shape[:2] == mask.shape
        assert torch.all(delta[mask == 0] == 0), "padding positions must not be perturbed"
        if norm == "std":
            assert abs(float(delta[mask == 1].std()) - bound) < 0.1 * bound
            continue
        size = delta.abs().amax(-1).max() if norm == "position_linf" else example_norms(delta, norm).max()
        assert size <= bound * (1 + 1e-5)
    if key.startswith(("fgm", "pgd", "freelb")):  # ascent moved each call's perturbation to the boundary
        bound = step.settings.max_norm if key.startswith("freelb") else step.settings.epsilon
        for delta in deltas[-2:]:
            assert torch.allclose(example_norms(delta, step.settings.norm), torch.tensor(bound), rtol=1e-3)
    if key.startswith(("smart", "r3f")):
        assert step.last["regulariser"] > 0
    optimizer.step()
    assert any(n.startswith("encoder.") and not torch.equal(p, before[n])
               for n, p in model.named_parameters())

"""The built-in ``tiny`` model: a small XLM-R encoder pretrained locally on the toy corpus.

Sweeps, demos and tests must run offline on a laptop CPU, so instead of downloading
``xlm-roberta-base`` we build a miniature of it: a SentencePiece-style Unigram tokenizer trained
with ``tokenizers``, an ``XLMRobertaConfig`` with a few small layers, and a short pretraining on
the toy corpus: masked-LM on monolingual text of every toy language plus code-switched text, and
InfoXLM's cross-lingual contrast on its translation pairs. The pretraining is what gives it
cross-lingual alignment to transfer; a randomly initialised encoder fine-tuned on English
transfers much worse.

The result is a normal Hugging Face checkpoint directory (``AutoTokenizer`` / ``AutoModel``
load it), built once and cached under a name that hashes the settings and the data it was
trained on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from filelock import FileLock

logger = logging.getLogger(__name__)

#: bump when the build recipe changes so that old caches are not reused
BUILD_VERSION = 3
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R order: ids 0..4
_MARKER = "tiny_model.json"
_CORPUS_FILES = ("en.txt", "xs.txt", "xo.txt", "xv.txt", "mixed.txt", "parallel.tsv")


@dataclass(frozen=True)
class TinyModelSettings:
    """Size and pretraining recipe of the tiny model.

    Defaults are sized for a 2-core CPU: the build takes under 2 minutes and fine-tuning on a
    2000-example toy task takes seconds per epoch. Every field is part of the cache key.
    """

    #: upper bound on the vocabulary; the Unigram trainer stops earlier on the toy lexicon (~1.1k)
    vocab_size: int = 2000
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    #: longest input (in tokens, specials included) the model accepts
    max_position: int = 128
    pretrain_steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 3e-3
    #: longest pretraining sequence (one corpus sentence per sequence, truncated to this)
    seq_len: int = 48
    #: fraction of tokens the MLM predicts (more than BERT's 15%: more signal per step)
    mask_rate: float = 0.3
    #: how many times the code-switched corpus is repeated relative to each monolingual one
    mixed_weight: int = 16
    #: weight of a cross-lingual contrastive loss on the parallel corpus (InfoXLM's XLCo, Chi et
    #: al. 2021): a sentence's pooled last-layer state must be nearer its translation's than the
    #: batch's other translations'. MLM on 20k lines per language aligns the toy languages' words
    #: only through their shared anchors (Tatoeba top-1 ~12%); real XLM-R had 2.5 TB. 0 = MLM only
    contrast_weight: float = 1.0
    #: translation pairs per contrastive batch, and the softmax temperature
    contrast_batch: int = 64
    contrast_temperature: float = 0.05
    #: pooling of the last layer the contrast compares ("cls" as in InfoXLM, or "mean")
    contrast_pooling: str = "cls"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.seq_len > self.max_position:
            raise ValueError("seq_len must not exceed max_position")
        if (self.vocab_size <= len(SPECIAL_TOKENS) or self.pretrain_steps < 0 or self.batch_size < 1
                or not 0 < self.mask_rate < 1 or self.mixed_weight < 0 or self.seq_len < 8
                or self.contrast_weight < 0 or self.contrast_batch < 2 or self.contrast_temperature <= 0
                or self.contrast_pooling not in ("cls", "mean")):
            raise ValueError(f"invalid tiny model settings: {self}")


def cache_key(settings: TinyModelSettings, data_manifest: dict) -> str:
    """Short hash of everything the built model depends on: settings, recipe, corpus contents."""
    checksums = data_manifest.get("sha256", {})
    corpus = {name: checksums.get(f"corpus/{name}") for name in _CORPUS_FILES}
    payload = {"settings": asdict(settings), "data": data_manifest.get("arguments"), "corpus": corpus,
               "build_version": BUILD_VERSION}
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file()
               for name in (_MARKER, "config.json", "model.safetensors", "tokenizer.json"))


def ensure_tiny_model(cache_dir: Path, data_root: Path,
                      settings: TinyModelSettings = TinyModelSettings()) -> Path:
    """Return the directory of the tiny model for ``settings``, building it on first use.

    ``data_root`` is a toy XTREME directory; it is generated with default arguments if it has no
    manifest. Concurrent callers serialise on a file lock: one builds, the others wait and reuse.
    """
    from trainables.toy.world import GENERATOR_VERSION, read_manifest, write_toy_xtreme

    cache_dir = Path(cache_dir)
    data_root = Path(data_root)
    manifest = read_manifest(data_root)
    arguments = dict((manifest or {}).get("arguments") or {})
    if manifest is None or arguments.pop("generator_version", None) != GENERATOR_VERSION:
        logger.info("no current toy data at %s; generating it", data_root)
        write_toy_xtreme(data_root, **arguments)  # an older generator's build: same arguments
        manifest = read_manifest(data_root)
        if manifest is None:  # pragma: no cover - write_toy_xtreme always writes one
            raise RuntimeError(f"toy data at {data_root} has no manifest")
    name = f"tiny-xlmr-{cache_key(settings, manifest)}"
    final = cache_dir / name
    if _is_complete(final):
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{name}.lock")):
        if _is_complete(final):  # another process built it while we waited
            return final
        tmp = cache_dir / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            _build(tmp, data_root, settings, manifest)
            if final.exists():  # a broken leftover (e.g. a killed build without the lock)
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------------------------
# Build steps


def _corpus_lines(data_root: Path, seed: int = 0, split_punct_rate: float = 0.25) -> list[tuple[str, str]]:
    """(file name, line) for every corpus line; some with punctuation split off as its own word.

    Downstream tagging feeds pre-split words (``is_split_into_words``), where "." stands alone
    while running text glues it to the previous word; showing both forms in pretraining gives
    the standalone pieces trained embeddings.
    """
    rng = random.Random(seed)
    lines: list[tuple[str, str]] = []
    for name in _CORPUS_FILES:
        path = data_root / "corpus" / name
        with path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                if rng.random() < split_punct_rate:
                    line = line.replace(".", " .").replace(",", " ,")
                lines.append((name, line))
    return lines


def train_tokenizer(lines: list[str], vocab_size: int):
    """A SentencePiece-like Unigram tokenizer with XLM-R's special tokens, as a HF fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    raw = Tokenizer(models.Unigram())
    # the same pre-tokenisation XLMRobertaTokenizer uses, so the learned pieces fit it
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    # keep a tenth of the budget for the word-initial pieces added below
    trainer = trainers.UnigramTrainer(vocab_size=max(len(SPECIAL_TOKENS) + 1, vocab_size * 9 // 10),
                                      special_tokens=list(SPECIAL_TOKENS),
                                      unk_token="<unk>", show_progress=False, max_piece_length=12)
    raw.train_from_iterator(lines, trainer=trainer)
    vocab = [tuple(piece) for piece in json.loads(raw.to_str())["model"]["vocab"]]
    if [p for p, _ in vocab[: len(SPECIAL_TOKENS)]] != list(SPECIAL_TOKENS):
        raise RuntimeError("tokenizer trainer did not put the special tokens first")
    vocab = _attach_word_boundaries(raw, vocab, lines, vocab_size)
    tokenizer = XLMRobertaTokenizer(vocab=vocab)
    return tokenizer


def _attach_word_boundaries(raw, vocab: list[tuple], lines: list[str], vocab_size: int) -> list[tuple]:
    """Give word-initial pieces their "▁" back (within the ``vocab_size`` budget).

    The Unigram trainer likes to segment frequent short words as a bare "▁" plus the word (the
    word also occurs inside fused forms), which would make the first sub-word of a fifth of all
    words the same uninformative "▁" - bad for first-sub-word tagging. For such splits, most
    frequent words first, we add the joined piece with a score just above the split's, so that
    Viterbi prefers it.
    """
    scores = dict(vocab)
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(line.split())
    extra: dict[str, float] = {}
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) + len(extra) >= vocab_size:
            break
        pieces = raw.encode(word, add_special_tokens=False).tokens
        if len(pieces) >= 2 and pieces[0] == "▁":
            joined = "▁" + pieces[1]
            if joined not in scores and joined not in extra:
                extra[joined] = min(-0.01, scores["▁"] + scores[pieces[1]] + 1.0)
    return vocab + list(extra.items())


def mask_tokens(input_ids: torch.Tensor, *, mask_id: int, vocab_size: int, n_special: int,
                generator: torch.Generator, rate: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: 15% of non-special tokens are predicted; of those 80% <mask>, 10% random, 10% kept."""
    labels = input_ids.clone()
    candidates = input_ids >= n_special
    chosen = (torch.rand(input_ids.shape, generator=generator) < rate) & candidates
    labels[~chosen] = -100
    inputs = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (r < 0.8)] = mask_id
    random_ids = torch.randint(n_special, vocab_size, input_ids.shape, generator=generator)
    swap = chosen & (r >= 0.8) & (r < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


def model_config(settings: TinyModelSettings, vocab_size: int):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads,
        intermediate_size=settings.intermediate_size,
        # XLM-R positions start after the padding index (1), hence the +2
        max_position_embeddings=settings.max_position + 2,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )


def _build(out: Path, data_root: Path, settings: TinyModelSettings, manifest: dict) -> None:
    from transformers import XLMRobertaForMaskedLM

    start = time.monotonic()
    out.mkdir(parents=True)
    lines = _corpus_lines(data_root, settings.seed)
    logger.info("tiny model: training a %d-piece tokenizer on %d corpus lines", settings.vocab_size, len(lines))
    tokenizer = train_tokenizer([line for _, line in lines], settings.vocab_size)
    tokenizer.model_max_length = settings.max_position
    vocab_size = len(tokenizer)

    sentences = _pretraining_sentences(tokenizer, lines, settings)
    logger.info("tiny model: vocabulary %d, %d pretraining sentences", vocab_size, len(sentences))

    config = model_config(settings, vocab_size)
    # seeded init and dropout, without clobbering the caller's global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = XLMRobertaForMaskedLM(config)
        loss = _pretrain(model, sentences, settings, mask_id=tokenizer.mask_token_id,
                         pad_id=tokenizer.pad_token_id, vocab_size=vocab_size,
                         pairs=_translation_pairs(tokenizer, lines, settings))

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    elapsed = time.monotonic() - start
    info = {"settings": asdict(settings), "data": manifest["arguments"], "build_version": BUILD_VERSION,
            "final_mlm_loss": loss, "build_seconds": round(elapsed, 1), "vocab_size": vocab_size}
    (out / _MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("tiny model built in %.0f s (final MLM loss %.3f)", elapsed, loss)


def _pretraining_sentences(tokenizer, lines: list[tuple[str, str]],
                           settings: TinyModelSettings) -> list[list[int]]:
    """``<s> sentence </s>`` id lists: every monolingual corpus once, the code-switched one
    ``mixed_weight`` times (it carries the cross-lingual signal, so it gets more of the budget).

    One sentence per sequence rather than packed windows: with this little compute the model
    learns faster when it need not first learn where sentences start and end.
    """
    single = [(name, line) for name, line in lines if name != "parallel.tsv"]  # pairs: the contrast's
    ids = tokenizer([line for _, line in single], truncation=True, max_length=settings.seq_len)["input_ids"]
    out: list[list[int]] = []
    for (name, _), seq in zip(single, ids):
        out.extend([seq] * (settings.mixed_weight if name == "mixed.txt" else 1))
    return out


def _translation_pairs(tokenizer, lines: list[tuple[str, str]],
                       settings: TinyModelSettings) -> list[tuple[list[int], list[int]]]:
    """(English ids, translation ids) of every parallel-corpus line, for the contrastive loss."""
    if not settings.contrast_weight:
        return []
    pairs = [line.split("\t") for name, line in lines if name == "parallel.tsv"]
    encode = lambda side: tokenizer(side, truncation=True, max_length=settings.seq_len)["input_ids"]
    return list(zip(encode([a for a, _ in pairs]), encode([b for _, b in pairs])))


def _padded(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    batch = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


def contrastive_loss(model, pairs: list[tuple[list[int], list[int]]], *, pad_id: int, layer: int,
                     temperature: float, pooling: str) -> torch.Tensor:
    """InfoXLM's cross-lingual contrast: each sentence's ``layer`` state, pooled by ``pooling``,
    picks its translation among the batch's translations (in-batch negatives), both directions."""
    from trainables.families.retrieval import pool

    sides = []
    for rows in ([a for a, _ in pairs], [b for _, b in pairs]):
        batch = _padded(rows, pad_id)
        mask = (batch != pad_id).long()
        hidden = model.roberta(input_ids=batch, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        sides.append(torch.nn.functional.normalize(pool(hidden, mask, pooling), dim=-1))
    logits = sides[0] @ sides[1].T / temperature
    gold = torch.arange(len(pairs))
    return (torch.nn.functional.cross_entropy(logits, gold) + torch.nn.functional.cross_entropy(logits.T, gold)) / 2


def _pretrain(model, sentences: list[list[int]], settings: TinyModelSettings, *, mask_id: int,
              pad_id: int, vocab_size: int, pairs: list[tuple[list[int], list[int]]] = ()) -> float:
    """Masked-LM pretraining (plus the cross-lingual contrast on ``pairs``) with AdamW, linear
    warm-up and linear decay. Returns the last logged MLM loss."""
    steps = settings.pretrain_steps
    if steps == 0 or not sentences:
        return float("nan")
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01,
                                  betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    layer = model.config.num_hidden_layers  # the last layer, as InfoXLM's contrast
    contrast = bool(pairs) and settings.contrast_weight > 0
    model.train()
    log_every = max(1, steps // 10)
    running, running_contrast, seen = 0.0, 0.0, 0
    last = math.nan
    perm = torch.randperm(len(sentences), generator=generator).tolist()
    cursor = 0
    for step in range(1, steps + 1):
        if cursor + settings.batch_size > len(perm):
            perm = torch.randperm(len(sentences), generator=generator).tolist()
            cursor = 0
        batch = _padded([sentences[i] for i in perm[cursor: cursor + settings.batch_size]], pad_id)
        cursor += settings.batch_size
        inputs, labels = mask_tokens(batch, mask_id=mask_id, vocab_size=vocab_size,
                                     n_special=len(SPECIAL_TOKENS), generator=generator,
                                     rate=settings.mask_rate)
        attention = (batch != pad_id).long()
        hidden = model.roberta(input_ids=inputs, attention_mask=attention).last_hidden_state
        target = labels != -100  # only masked positions go through the (large) output layer
        if not target.any():
            continue
        mlm = torch.nn.functional.cross_entropy(model.lm_head(hidden[target]), labels[target])
        loss = mlm
        if contrast:
            picked = torch.randint(len(pairs), (min(settings.contrast_batch, len(pairs)),), generator=generator)
            xlco = contrastive_loss(model, [pairs[i] for i in picked.tolist()], pad_id=pad_id, layer=layer,
                                    temperature=settings.contrast_temperature, pooling=settings.contrast_pooling)
            loss = mlm + settings.contrast_weight * xlco
            running_contrast += xlco.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running += mlm.item()
        seen += 1
        if step % log_every == 0 or step == steps:
            last = running / max(1, seen)
            logger.info("tiny model pretraining: step %d/%d, MLM loss %.3f%s", step, steps, last,
                        f", contrastive loss {running_contrast / max(1, seen):.3f}" if contrast else "")
            running, running_contrast, seen = 0.0, 0.0, 0
    model.eval()
    return last

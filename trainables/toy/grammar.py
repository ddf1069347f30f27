"""Semantics and rendering of the toy languages.

A sentence is first sampled as *meaning* (events with agent, verb, patient and modifiers) and
only then rendered into a language. Task labels are computed on meanings, so they are right by
construction in every language, and test sets in different languages are translations of each
other (like XNLI, UD PUD or Tatoeba).

Word orders: ``en`` and ``xs`` are SVO with adjectives before the noun and prepositions; ``xo``
is SOV with adjectives after the noun, postpositions and the verb last in its clause; ``xv`` is
VSO with the negation particle and the verb first.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from trainables.toy.lexicon import (
    ADJS_BY_CLASS,
    ADPS,
    ADVS,
    EN_SYNONYMS,
    LEXICON,
    NOUNS_BY_CLASS,
    NUMERALS,
    PERSON_NAMES,
    PLACE_NAMES,
    PRONOUN_NUMBER,
    PRONOUNS,
    TOY_LANGUAGES,
    VERB_PATIENT,
    VERBS,
)

CONTENT_UPOS = frozenset({"NOUN", "VERB", "ADJ", "ADV"})
FUNCTION_UPOS = frozenset({"DET", "ADP", "PRON", "CCONJ", "PART"})

# ------------------------------------------------------------------------------------------------
# Meaning


@dataclass(frozen=True)
class NP:
    """A noun phrase. ``kind``: noun | name | pron | coord (``head`` and ``second`` conjoined)."""

    kind: str
    head: str
    adjs: tuple[str, ...] = ()
    adj_and: bool = False  # "big and old" instead of "big old"
    det: str | None = "the"  # "the" | "a" | None
    num: str | None = None  # a digit string; makes the noun plural
    second: NP | None = None

    @property
    def cls(self) -> str:
        if self.kind in ("name", "pron", "coord"):
            return "animate"
        for cls, nouns in NOUNS_BY_CLASS.items():
            if self.head in nouns:
                return cls
        raise KeyError(self.head)

    @property
    def plural(self) -> bool:
        if self.kind == "coord":
            return True
        if self.kind == "pron":
            return PRONOUN_NUMBER[self.head] == "pl"
        return self.num is not None


@dataclass(frozen=True)
class PP:
    adp: str
    np: NP


@dataclass(frozen=True)
class Event:
    """One clause's meaning. ``adv_initial`` is surface-only (where en/xs put the adverb)."""

    agent: NP
    verb: str
    patient: NP
    pp: PP | None = None
    adv: str | None = None
    neg: bool = False
    adv_initial: bool = False


Sentence = tuple[Event, ...]  # one or two coordinated clauses

# ------------------------------------------------------------------------------------------------
# Topics: concept-specific contexts
#
# A sentence is about one of ``N_TOPICS`` scenes, and most of its content words (nouns, verbs,
# adjectives, adverbs, names) are drawn from that scene's members. Without this, every noun of a
# class would occur in exactly the same contexts as every other one, so no amount of masked-LM
# pretraining could tell "dog" from "cat" - or align "dog" with its translation: real words have
# characteristic company, and that is what multilingual pretraining aligns.

N_TOPICS = 12
#: probability that a content word is drawn from the sentence's topic rather than uniformly
TOPIC_RATE = 0.8


def _topic_table() -> dict[str, int]:
    table: dict[str, int] = {}
    groups = [*NOUNS_BY_CLASS.values(), VERBS, *ADJS_BY_CLASS.values(), ADVS, PERSON_NAMES, PLACE_NAMES]
    for group in groups:
        order = list(group)
        random.Random(f"xstilts-toy-topics-{group[0]}").shuffle(order)
        for i, item in enumerate(order):
            table[item] = i % N_TOPICS
    return table


TOPIC_OF: dict[str, int] = _topic_table()


def sample_topic(rng: random.Random) -> int:
    return rng.randrange(N_TOPICS)


def pick(rng: random.Random, items, topic: int | None, exclude=()):
    """One of ``items``: with probability ``TOPIC_RATE`` one of ``topic``'s members (if it has any)."""
    pool = [x for x in items if x not in exclude]
    if topic is not None and rng.random() < TOPIC_RATE:
        members = [x for x in pool if TOPIC_OF.get(x) == topic]
        if members:
            return rng.choice(members)
    return rng.choice(pool)


# ------------------------------------------------------------------------------------------------
# Sampling meanings


_ADJ_CHOICES = {
    cls: ADJS_BY_CLASS["general"] + (ADJS_BY_CLASS["animate"] if cls == "animate" else ADJS_BY_CLASS["thing"])
    for cls in NOUNS_BY_CLASS
}


def sample_adjs(rng: random.Random, cls: str, k: int, topic: int | None = None) -> tuple[str, ...]:
    adjs: list[str] = []
    for _ in range(k):
        adjs.append(pick(rng, _ADJ_CHOICES[cls], topic, exclude=adjs))
    return tuple(adjs)


def sample_noun_np(rng: random.Random, cls: str, *, allow_num: bool = False,
                   adj_probs: tuple[float, float] = (0.33, 0.12), topic: int | None = None) -> NP:
    head = pick(rng, NOUNS_BY_CLASS[cls], topic)
    r = rng.random()
    k = 2 if r < adj_probs[1] else 1 if r < adj_probs[0] + adj_probs[1] else 0
    adjs = sample_adjs(rng, cls, k, topic)
    num = rng.choice(NUMERALS) if allow_num and rng.random() < 0.15 else None
    if num is not None:
        det = "the" if rng.random() < 0.3 else None
    else:
        det = "the" if rng.random() < 0.65 else "a"
    return NP("noun", head, adjs, k == 2 and rng.random() < 0.4, det, num)


def sample_agent(rng: random.Random, topic: int | None = None) -> NP:
    r = rng.random()
    if r < 0.15:
        return NP("name", pick(rng, PERSON_NAMES, topic), det=None)
    if r < 0.25:
        return NP("pron", rng.choice(PRONOUNS), det=None)
    if r < 0.31:
        first = sample_noun_np(rng, "animate", adj_probs=(0.2, 0.0), topic=topic)
        second = first
        while second.head == first.head:  # "the dog and the dog" is not a coordination
            second = (NP("name", pick(rng, PERSON_NAMES, topic), det=None) if rng.random() < 0.3
                      else sample_noun_np(rng, "animate", adj_probs=(0.2, 0.0), topic=topic))
        return _coord(first, second)
    return sample_noun_np(rng, "animate", topic=topic)


def _coord(first: NP, second: NP) -> NP:
    """``first and second``: stored as a coord NP whose ``head`` field is unused."""
    return NP("coord", first.head, first.adjs, first.adj_and, first.det, None, second)


def coord_first(np: NP) -> NP:
    return NP("noun", np.head, np.adjs, np.adj_and, np.det)


def patient_class_for(rng: random.Random, verb: str) -> str:
    want = VERB_PATIENT[verb]
    if want == "any":
        r = rng.random()
        return "animate" if r < 0.4 else "thing" if r < 0.85 else "food"
    if want == "thing":
        return "thing" if rng.random() < 0.8 else "food"
    return want


def verb_accepts(verb: str, cls: str) -> bool:
    want = VERB_PATIENT[verb]
    return want == "any" or want == cls or (want == "thing" and cls == "food")


def sample_patient(rng: random.Random, verb: str, topic: int | None = None) -> NP:
    cls = patient_class_for(rng, verb)
    if cls == "animate" and rng.random() < 0.2:
        return NP("name", pick(rng, PERSON_NAMES, topic), det=None)
    return sample_noun_np(rng, cls, allow_num=True, topic=topic)


def sample_pp(rng: random.Random, topic: int | None = None) -> PP:
    adp = rng.choice(ADPS)
    if rng.random() < 0.2:
        return PP(adp, NP("name", pick(rng, PLACE_NAMES, topic), det=None))
    return PP(adp, sample_noun_np(rng, "place", adj_probs=(0.25, 0.0), topic=topic))


def definite(np: NP) -> NP:
    """The same referent with a definite article (negated events use only definites)."""
    second = definite(np.second) if np.second is not None else None
    if np.det != "a" and second is np.second:
        return np
    det = "the" if np.det == "a" else np.det
    return replace(np, det=det, second=second)


def sample_event(rng: random.Random, *, neg_rate: float = 0.2, pp_rate: float = 0.35,
                 adv_rate: float = 0.3, topic: int | None = None) -> Event:
    """One clause; ``topic`` (see ``pick``) biases its content words, None draws them uniformly."""
    verb = pick(rng, VERBS, topic)
    agent = sample_agent(rng, topic)
    patient = sample_patient(rng, verb, topic)
    pp = sample_pp(rng, topic) if rng.random() < pp_rate else None
    adv = pick(rng, ADVS, topic) if rng.random() < adv_rate else None
    neg = rng.random() < neg_rate
    ev = Event(agent, verb, patient, pp, adv, neg, adv_initial=adv is not None and rng.random() < 0.4)
    return normalise_negation(ev) if neg else ev


def normalise_negation(ev: Event) -> Event:
    """Negated events: definite articles, no numerals, so that modifier changes under negation
    keep the simple entailment rules below valid (no downward-monotone surprises)."""
    patient = definite(ev.patient)
    if patient.num is not None:
        patient = replace(patient, num=None, det="the")
    pp = ev.pp
    if pp is not None and pp.np.det == "a":
        pp = PP(pp.adp, definite(pp.np))
    agent = definite(ev.agent)
    if agent is ev.agent and patient is ev.patient and pp is ev.pp:
        return ev
    return replace(ev, agent=agent, patient=patient, pp=pp)


def sample_sentence(rng: random.Random, *, two_clause_rate: float = 0.12) -> Sentence:
    """One or two clauses about one topic (drawn here)."""
    topic = sample_topic(rng)
    first = sample_event(rng, topic=topic)
    if rng.random() < two_clause_rate:
        second = replace(sample_event(rng, topic=topic), adv_initial=False)
        return (first, second)
    return (first,)


# ------------------------------------------------------------------------------------------------
# Rendering


class Tok:
    """A syntactic word. ``key`` is the lexicon entry (None for shared anchors); ``fuse_next``
    makes this word and the next one a multiword token (surface = the two forms concatenated)."""

    __slots__ = ("form", "lemma", "upos", "feats", "head", "deprel", "chunk", "key",
                 "fuse_next", "space_after")

    def __init__(self, form: str, lemma: str, upos: str, key: tuple[str, str] | None = None,
                 feats: str = "_") -> None:
        self.form = form
        self.lemma = lemma
        self.upos = upos
        self.feats = feats
        self.head: Tok | None = None
        self.deprel = "root"
        self.chunk: tuple[str, int] | None = None  # (type, chunk id); None = outside
        self.key = key
        self.fuse_next = False
        self.space_after = True


@dataclass
class _Style:
    """Surface choices: English synonyms and contractions (multiword tokens)."""

    rng: random.Random
    synonym_rate: float = 0.15
    contract_rate: float = 0.4


class _Renderer:
    def __init__(self, lang: str, style: _Style) -> None:
        if lang not in TOY_LANGUAGES:
            raise ValueError(f"unknown toy language {lang!r}")
        self.lang = lang
        self.en = lang == "en"
        self.style = style
        self.forms = LEXICON.forms[lang]
        self.chunk_id = 0

    # -- words
    def word(self, concept: str, upos: str, variant: str = "", feats: str = "_") -> Tok:
        key = (concept, variant)
        lemma = self.forms[(concept, "")]
        form = self.forms.get(key, lemma) if variant else lemma
        if self.en and concept in EN_SYNONYMS and self.style.rng.random() < self.style.synonym_rate:
            synonyms = LEXICON.en_synonym_forms
            j = self.style.rng.randrange(len(EN_SYNONYMS[concept]))
            form = (synonyms.get(key) or synonyms[(concept, "")])[j]
            lemma = EN_SYNONYMS[concept][j]
        return Tok(form, lemma, upos, key, feats)

    def new_chunk(self, kind: str) -> tuple[str, int]:
        self.chunk_id += 1
        return (kind, self.chunk_id)

    # -- phrases
    def np(self, np: NP) -> tuple[list[Tok], Tok]:
        if np.kind == "coord":
            assert np.second is not None
            left, lhead = self.np(coord_first(np))
            cc = self.word("and", "CCONJ")
            right, rhead = self.np(np.second)
            cc.head, cc.deprel = rhead, "cc"
            rhead.head, rhead.deprel = lhead, "conj"
            return left + [cc] + right, lhead
        chunk = self.new_chunk("NP")
        if np.kind == "name":
            tok = Tok(np.head, np.head, "PROPN", None, "Number=Sing")
            tok.chunk = chunk
            return [tok], tok
        if np.kind == "pron":
            number = "Plur" if np.plural else "Sing"
            tok = self.word(np.head, "PRON", feats=f"Number={number}|Person=3|PronType=Prs")
            tok.chunk = chunk
            return [tok], tok
        plural = np.num is not None
        noun = self.word(np.head, "NOUN", "pl" if plural else "",
                         feats="Number=Plur" if plural else "Number=Sing")
        adjs: list[Tok] = []
        for i, adj in enumerate(np.adjs):
            if i and np.adj_and:
                cc = self.word("and", "CCONJ")
                adjs.append(cc)
            tok = self.word(adj, "ADJ", feats="Degree=Pos")
            if i and np.adj_and:
                tok.head, tok.deprel = adjs[0], "conj"
                adjs[-1].head, adjs[-1].deprel = tok, "cc"
            else:
                tok.head, tok.deprel = noun, "amod"
            adjs.append(tok)
        pre: list[Tok] = []
        if np.det is not None:
            definite_ = "Def" if np.det == "the" else "Ind"
            det = self.word(np.det, "DET", feats=f"Definite={definite_}|PronType=Art")
            det.head, det.deprel = noun, "det"
            pre.append(det)
        if np.num is not None:
            num = Tok(np.num, np.num, "NUM", None, "NumType=Card")
            num.head, num.deprel = noun, "nummod"
            pre.append(num)
        if self.lang == "xo":
            toks = pre + [noun] + adjs
        else:
            toks = pre + adjs + [noun]
        for t in toks:
            t.chunk = chunk
        if self.lang == "en" and np.det == "a" and toks[1].form[0] in "aeiou":
            toks[0].form = "an"
            toks[0].key = ("a", "an")
        return toks, noun

    def pp(self, pp: PP) -> tuple[list[Tok], Tok]:
        toks, head = self.np(pp.np)
        adp = self.word(pp.adp, "ADP")
        adp.head, adp.deprel = head, "case"
        adp.chunk = self.new_chunk("PP")
        head.deprel = "obl"
        contract = self.style.rng.random() < self.style.contract_rate
        if self.lang == "xo":
            # postposition; fuses with a bare noun right before it (like a case clitic)
            if contract and toks[-1] is head and pp.np.kind == "noun":
                head.fuse_next = True
            return toks + [adp], head
        if contract and self.lang in ("xs", "xv") and toks[0].upos == "DET":
            adp.fuse_next = True  # preposition + article, like German "zum" or French "du"
        return [adp] + toks, head

    def verb_group(self, ev: Event) -> tuple[list[Tok], Tok]:
        agent_plural = ev.agent.plural
        chunk = self.new_chunk("VP")
        if self.lang == "en":
            if ev.neg:
                verb = self.word(ev.verb, "VERB", feats="VerbForm=Inf")
                aux_form = self.forms[("do", "" if agent_plural else "3sg")]
                aux = Tok(aux_form, "do", "AUX", None,
                          "Mood=Ind|Number=Plur|Tense=Pres|VerbForm=Fin" if agent_plural
                          else "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin")
                neg = self.word("not", "PART", feats="Polarity=Neg")
                if self.style.rng.random() < self.style.contract_rate:
                    aux.fuse_next = True
                    neg.form = self.forms[("not", "clitic")]
                aux.head, aux.deprel = verb, "aux"
                neg.head, neg.deprel = verb, "advmod"
                toks = [aux, neg, verb]
            else:
                verb = self.word(ev.verb, "VERB", "" if agent_plural else "3sg",
                                 feats="Mood=Ind|Tense=Pres|VerbForm=Fin")
                toks = [verb]
        else:
            verb = self.word(ev.verb, "VERB", feats="Mood=Ind|Tense=Pres|VerbForm=Fin")
            toks = [verb]
            if ev.neg:
                neg = self.word("not", "PART", feats="Polarity=Neg")
                neg.head, neg.deprel = verb, "advmod"
                toks = [neg, verb]
        for t in toks:
            t.chunk = chunk
        return toks, verb

    def clause(self, ev: Event, *, first: bool) -> tuple[list[Tok], Tok]:
        subj, subj_head = self.np(ev.agent)
        vg, verb = self.verb_group(ev)
        obj, obj_head = self.np(ev.patient)
        subj_head.head, subj_head.deprel = verb, "nsubj"
        obj_head.head, obj_head.deprel = verb, "obj"
        pp: list[Tok] = []
        if ev.pp is not None:
            pp, pp_head = self.pp(ev.pp)
            pp_head.head = verb
        adv: list[Tok] = []
        if ev.adv is not None:
            a = self.word(ev.adv, "ADV")
            a.head, a.deprel = verb, "advmod"
            a.chunk = self.new_chunk("ADVP")
            adv = [a]
        if self.lang in ("en", "xs"):
            if adv and ev.adv_initial and first:
                comma = Tok(",", ",", "PUNCT")
                comma.head, comma.deprel = verb, "punct"
                return adv + [comma] + subj + vg + obj + pp, verb
            return subj + vg + obj + pp + adv, verb
        if self.lang == "xo":
            return adv + subj + pp + obj + vg, verb
        # xv: VSO
        return vg + subj + obj + pp + adv, verb

    def sentence(self, sent: Sentence) -> list[Tok]:
        toks, root = self.clause(sent[0], first=True)
        root.head, root.deprel = None, "root"
        for ev in sent[1:]:
            cc = self.word("and", "CCONJ")
            more, verb = self.clause(ev, first=False)
            verb.head, verb.deprel = root, "conj"
            cc.head, cc.deprel = verb, "cc"
            toks += [cc] + more
        stop = Tok(".", ".", "PUNCT")
        stop.head, stop.deprel = root, "punct"
        toks.append(stop)
        for i, t in enumerate(toks[:-1]):
            if toks[i + 1].upos == "PUNCT":
                t.space_after = False
        toks[-1].space_after = False
        return toks


def render(sent: Sentence | Event, lang: str, rng: random.Random, *, synonym_rate: float = 0.15,
           contract_rate: float = 0.4) -> list[Tok]:
    """Syntactic words of ``sent`` in ``lang`` (surface choices drawn from ``rng``)."""
    if isinstance(sent, Event):
        sent = (sent,)
    return _Renderer(lang, _Style(rng, synonym_rate, contract_rate)).sentence(sent)


def code_switch(toks: list[Tok], rng: random.Random, *, content_rate: float,
                function_rate: float = 0.0, languages: tuple[str, ...] = TOY_LANGUAGES) -> None:
    """Render some words in another language, in place (the way bilinguals mix languages).

    The sentence keeps its base language's word order; a switched word takes the other
    language's form of the same lexicon entry.
    """
    for t in toks:  # mixed text keeps no contractions
        if t.fuse_next:
            t.fuse_next = False
        if t.form == "n't":
            t.form = "not"
    for t in toks:
        if t.key is None:
            continue
        rate = content_rate if t.upos in CONTENT_UPOS else function_rate if t.upos in FUNCTION_UPOS else 0.0
        if rate and rng.random() < rate:
            lang = rng.choice(languages)
            concept, variant = t.key
            if lang == "en" and t.upos == "VERB" and not variant:
                variant = "3sg"
            table = LEXICON.forms[lang]
            t.form = table.get((concept, variant)) or table[(concept, "")]


def text(toks: list[Tok]) -> str:
    """The sentence as running text (multiword tokens fused, no space before punctuation)."""
    parts: list[str] = []
    for t in toks:
        parts.append(t.form)
        if t.space_after and not t.fuse_next:
            parts.append(" ")
    return "".join(parts).rstrip()


def heads(toks: list[Tok]) -> list[int]:
    """1-based head index of every word (0 = root)."""
    index = {id(t): i + 1 for i, t in enumerate(toks)}
    return [0 if t.head is None else index[id(t.head)] for t in toks]


def chunk_tags(toks: list[Tok]) -> list[str]:
    """BIO chunk tags (CoNLL-2000 style: NP, VP, PP, ADVP; punctuation and clause links O)."""
    tags: list[str] = []
    prev: tuple[str, int] | None = None
    for t in toks:
        if t.chunk is None:
            tags.append("O")
        elif t.chunk == prev:
            tags.append(f"I-{t.chunk[0]}")
        else:
            tags.append(f"B-{t.chunk[0]}")
        prev = t.chunk
    return tags

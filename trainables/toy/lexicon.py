"""The toy world's concepts and their word forms in every toy language.

English forms are real English words so that English examples read naturally. The derived
languages (``xs``, ``xo``, ``xv``) get pseudo-words built from a syllable inventory of their own,
so their sub-words differ from English the way real languages' do. Digits, punctuation and
proper names are spelled identically everywhere, and a share of each derived language's content
words are English loanwords (``xs`` 40%, ``xv`` 30%, ``xo`` 20%: the closer the language, the
more): they are the real-world anchors that multilingual pretraining exploits.

The lexicon is fixed (generated from constant seeds), independent of the data seed: different
data seeds sample different sentences from the *same* languages, so models and results stay
comparable across seeds.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

TOY_LANGUAGES: tuple[str, ...] = ("en", "xs", "xo", "xv")
DERIVED_LANGUAGES: tuple[str, ...] = TOY_LANGUAGES[1:]


# --- English side of the lexicon --------------------------------------------------------------
# Nouns: (singular, plural, class). Classes: animate / thing / food / place.
_EN_NOUNS: tuple[tuple[str, str, str], ...] = (
    ("dog", "dogs", "animate"), ("cat", "cats", "animate"), ("horse", "horses", "animate"),
    ("bird", "birds", "animate"), ("child", "children", "animate"), ("farmer", "farmers", "animate"),
    ("teacher", "teachers", "animate"), ("doctor", "doctors", "animate"),
    ("student", "students", "animate"), ("baker", "bakers", "animate"),
    ("sailor", "sailors", "animate"), ("singer", "singers", "animate"), ("king", "kings", "animate"),
    ("queen", "queens", "animate"), ("girl", "girls", "animate"), ("boy", "boys", "animate"),
    ("woman", "women", "animate"), ("man", "men", "animate"), ("fox", "foxes", "animate"),
    ("wolf", "wolves", "animate"), ("rabbit", "rabbits", "animate"),
    ("neighbor", "neighbors", "animate"), ("friend", "friends", "animate"),
    ("soldier", "soldiers", "animate"), ("driver", "drivers", "animate"),
    ("painter", "painters", "animate"), ("nurse", "nurses", "animate"),
    ("monkey", "monkeys", "animate"),
    ("book", "books", "thing"), ("ball", "balls", "thing"), ("letter", "letters", "thing"),
    ("box", "boxes", "thing"), ("cup", "cups", "thing"), ("key", "keys", "thing"),
    ("hat", "hats", "thing"), ("chair", "chairs", "thing"), ("table", "tables", "thing"),
    ("bag", "bags", "thing"), ("bottle", "bottles", "thing"), ("picture", "pictures", "thing"),
    ("car", "cars", "thing"), ("boat", "boats", "thing"), ("bike", "bikes", "thing"),
    ("lamp", "lamps", "thing"), ("flower", "flowers", "thing"), ("stone", "stones", "thing"),
    ("coin", "coins", "thing"), ("ring", "rings", "thing"), ("map", "maps", "thing"),
    ("basket", "baskets", "thing"), ("rope", "ropes", "thing"), ("candle", "candles", "thing"),
    ("shoe", "shoes", "thing"), ("clock", "clocks", "thing"), ("ticket", "tickets", "thing"),
    ("knife", "knives", "thing"),
    ("apple", "apples", "food"), ("cake", "cakes", "food"), ("egg", "eggs", "food"),
    ("orange", "oranges", "food"), ("pear", "pears", "food"), ("banana", "bananas", "food"),
    ("cookie", "cookies", "food"), ("sandwich", "sandwiches", "food"),
    ("carrot", "carrots", "food"), ("tomato", "tomatoes", "food"), ("lemon", "lemons", "food"),
    ("plum", "plums", "food"), ("peach", "peaches", "food"), ("potato", "potatoes", "food"),
    ("garden", "gardens", "place"), ("park", "parks", "place"), ("market", "markets", "place"),
    ("kitchen", "kitchens", "place"), ("river", "rivers", "place"), ("school", "schools", "place"),
    ("forest", "forests", "place"), ("city", "cities", "place"), ("village", "villages", "place"),
    ("station", "stations", "place"), ("street", "streets", "place"), ("room", "rooms", "place"),
    ("library", "libraries", "place"), ("field", "fields", "place"), ("harbor", "harbors", "place"),
)
# Verbs: (base, 3rd person singular, patient class). Patient class "any" = animate or thing/food.
_EN_VERBS: tuple[tuple[str, str, str], ...] = (
    ("see", "sees", "any"), ("find", "finds", "any"), ("watch", "watches", "any"),
    ("like", "likes", "any"), ("draw", "draws", "any"), ("paint", "paints", "any"),
    ("want", "wants", "thing"), ("carry", "carries", "any"),
    ("help", "helps", "animate"), ("follow", "follows", "animate"), ("visit", "visits", "animate"),
    ("call", "calls", "animate"), ("meet", "meets", "animate"), ("greet", "greets", "animate"),
    ("take", "takes", "thing"), ("push", "pushes", "thing"), ("buy", "buys", "thing"),
    ("bring", "brings", "thing"), ("hold", "holds", "thing"), ("open", "opens", "thing"),
    ("throw", "throws", "thing"), ("catch", "catches", "thing"), ("sell", "sells", "thing"),
    ("hide", "hides", "thing"), ("drop", "drops", "thing"),
    ("eat", "eats", "food"), ("cook", "cooks", "food"), ("wash", "washes", "food"),
    ("cut", "cuts", "food"),
)
# Adjectives: (form, class). Classes: animate-only, thing-only (things and food), general.
_EN_ADJS: tuple[tuple[str, str], ...] = (
    ("big", "general"), ("small", "general"), ("old", "general"), ("dark", "general"),
    ("brown", "general"), ("strong", "general"), ("cold", "general"), ("quiet", "general"),
    ("happy", "animate"), ("sad", "animate"), ("young", "animate"), ("lazy", "animate"),
    ("clever", "animate"), ("angry", "animate"), ("tall", "animate"), ("hungry", "animate"),
    ("heavy", "thing"), ("red", "thing"), ("blue", "thing"), ("green", "thing"),
    ("yellow", "thing"), ("wet", "thing"), ("new", "thing"), ("broken", "thing"),
    ("empty", "thing"), ("shiny", "thing"),
)
_EN_ADVS: tuple[str, ...] = ("today", "yesterday", "often", "again", "quickly", "slowly", "now")
_EN_ADPS: tuple[str, ...] = ("in", "near", "behind", "at", "beside")
_EN_PRONS: tuple[tuple[str, str], ...] = (("he", "sg"), ("she", "sg"), ("they", "pl"))
# Function words: concept name -> English form.
_EN_FUNCTION: dict[str, tuple[str, str]] = {
    "the": ("DET", "the"),
    "a": ("DET", "a"),
    "and": ("CCONJ", "and"),
    "not": ("PART", "not"),
}
# English synonyms (used for paraphrases and as natural variation in every English text).
EN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "big": ("large",), "small": ("little",), "happy": ("glad",), "quickly": ("fast",),
    "see": ("spot",), "buy": ("purchase",), "take": ("grab",), "help": ("assist",),
    "child": ("kid",), "picture": ("photo",), "street": ("road",), "angry": ("mad",),
    "shiny": ("bright",), "often": ("frequently",), "stone": ("rock",), "woman": ("lady",),
}
_EN_SYN_VERB_3SG = {"spot": "spots", "purchase": "purchases", "grab": "grabs", "assist": "assists"}
_EN_SYN_PLURAL = {"kid": "kids", "photo": "photos", "road": "roads", "rock": "rocks", "lady": "ladies"}

PERSON_NAMES: tuple[str, ...] = ("Maria", "John", "Ali", "Lena", "Omar", "Kenji", "Sofia",
                                 "Pedro", "Anna", "Ivan", "Fatima", "Chen")
PLACE_NAMES: tuple[str, ...] = ("Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Delhi", "Berlin",
                                "Nairobi")
NUMERALS: tuple[str, ...] = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "12")
PUNCT: tuple[str, ...] = (".", ",")
SHARED_ANCHORS: frozenset[str] = frozenset(PERSON_NAMES + PLACE_NAMES + NUMERALS + PUNCT)


# --- Derived languages' phonology -------------------------------------------------------------
@dataclass(frozen=True)
class _Phonology:
    onsets: tuple[str, ...]
    vowels: tuple[str, ...]
    codas: tuple[str, ...]
    plural_suffix: str
    #: share of content words borrowed from English as they are (loanwords, like "taxi" or
    #: "hotel" in many languages): real languages share such words and sub-words, and they
    #: anchor the cross-lingual alignment of multilingual pretraining; the closer the language
    #: to English, the more it has
    loan_rate: float = 0.0


_PHONOLOGY: dict[str, _Phonology] = {
    # soft CV language: "kamulin", "tisa"
    "xs": _Phonology(("k", "t", "m", "n", "s", "l", "p", "h"), ("a", "i", "u"),
                     ("", "", "", "n"), "ti", 0.4),
    # heavy consonant clusters, o/e vowels: "drokeg", "zorven"
    "xo": _Phonology(("b", "d", "g", "r", "z", "v", "dr", "gr", "br"), ("o", "e", "oe"),
                     ("", "k", "rg", "n", "v"), "ra", 0.2),
    # digraph-rich: "shaiqoux", "thouwee"
    "xv": _Phonology(("f", "w", "y", "ch", "sh", "th", "q", "j"), ("ai", "ou", "ee", "a", "y"),
                     ("", "", "x", "ll"), "que", 0.3),
}


def _concept_table() -> list[tuple[str, str, str]]:
    """All concepts as (name, upos, class), in a fixed order (the order seeds the word forms)."""
    table: list[tuple[str, str, str]] = []
    table += [(s, "NOUN", c) for s, _, c in _EN_NOUNS]
    table += [(b, "VERB", c) for b, _, c in _EN_VERBS]
    table += [(a, "ADJ", c) for a, c in _EN_ADJS]
    table += [(a, "ADV", "") for a in _EN_ADVS]
    table += [(a, "ADP", "") for a in _EN_ADPS]
    table += [(p, "PRON", n) for p, n in _EN_PRONS]
    table += [(name, upos, "") for name, (upos, _) in _EN_FUNCTION.items()]
    return table


CONCEPTS: tuple[tuple[str, str, str], ...] = tuple(_concept_table())
CONCEPT_POS: dict[str, str] = {name: upos for name, upos, _ in CONCEPTS}
CONCEPT_CLASS: dict[str, str] = {name: cls for name, _, cls in CONCEPTS}


def _syllable(rng: random.Random, ph: _Phonology, coda: bool) -> str:
    return rng.choice(ph.onsets) + rng.choice(ph.vowels) + (rng.choice(ph.codas) if coda else "")


@dataclass(frozen=True)
class Lexicon:
    """Word forms: ``forms[lang][(concept, variant)]``. Variants: "" (default), "pl" (noun plural),
    "3sg" (English verb agreement). Synonym forms are English-only (``en_synonym_forms``)."""

    forms: dict[str, dict[tuple[str, str], str]]
    en_synonym_forms: dict[tuple[str, str], tuple[str, ...]]
    #: English words that some derived language borrowed as they are
    loanwords: frozenset[str] = frozenset()

    def form(self, lang: str, concept: str, variant: str = "") -> str:
        table = self.forms[lang]
        key = (concept, variant)
        if key in table:
            return table[key]
        return table[(concept, "")]

    def vocabulary(self, lang: str) -> set[str]:
        """Every word form of ``lang`` (no anchors: names, digits and punctuation are shared)."""
        words = set(self.forms[lang].values())
        if lang == "en":
            for alts in self.en_synonym_forms.values():
                words.update(alts)
        return words


def _build_lexicon() -> Lexicon:
    names = [name for name, _, _ in CONCEPTS]
    if len(names) != len(set(names)):
        raise AssertionError("concept names must be unique")
    forms: dict[str, dict[tuple[str, str], str]] = {}
    en: dict[tuple[str, str], str] = {}
    for s, p, _ in _EN_NOUNS:
        en[(s, "")] = s
        en[(s, "pl")] = p
    for b, third, _ in _EN_VERBS:
        en[(b, "")] = b
        en[(b, "3sg")] = third
    for a, _ in _EN_ADJS:
        en[(a, "")] = a
    for a in _EN_ADVS + _EN_ADPS:
        en[(a, "")] = a
    for p, _ in _EN_PRONS:
        en[(p, "")] = p
    for name, (_, form) in _EN_FUNCTION.items():
        en[(name, "")] = form
    en[("a", "an")] = "an"  # before a vowel; chosen at render time
    # English-only auxiliary for negation ("does not see"); "n't" is its contracted particle
    en[("do", "")] = "do"
    en[("do", "3sg")] = "does"
    en[("not", "clitic")] = "n't"
    forms["en"] = en
    syn: dict[tuple[str, str], tuple[str, ...]] = {}
    for concept, alts in EN_SYNONYMS.items():
        syn[(concept, "")] = alts
        if CONCEPT_POS[concept] == "VERB":
            syn[(concept, "3sg")] = tuple(_EN_SYN_VERB_3SG[a] for a in alts)
        if CONCEPT_POS[concept] == "NOUN":
            syn[(concept, "pl")] = tuple(_EN_SYN_PLURAL[a] for a in alts)

    taken: set[str] = set(en.values()) | {a for alts in syn.values() for a in alts}
    taken |= {w.lower() for w in SHARED_ANCHORS}
    loans: set[str] = set()
    for lang in DERIVED_LANGUAGES:
        ph = _PHONOLOGY[lang]
        rng = random.Random(f"xstilts-toy-lexicon-{lang}")
        loan_rng = random.Random(f"xstilts-toy-loanwords-{lang}")
        table: dict[tuple[str, str], str] = {}
        for name, upos, _ in CONCEPTS:
            function_word = upos in ("DET", "ADP", "PRON", "CCONJ", "PART")
            if not function_word and loan_rng.random() < ph.loan_rate:
                word = en[(name, "")]
                table[(name, "")] = word
                loans.add(word)
                if upos == "NOUN":  # the language's own plural of the borrowed stem
                    table[(name, "pl")] = word + ph.plural_suffix
                    taken.add(word + ph.plural_suffix)
                continue
            for _attempt in range(1000):
                if function_word:
                    word = _syllable(rng, ph, coda=rng.random() < 0.3)
                else:
                    n_syl = rng.choice((2, 2, 3))
                    word = "".join(_syllable(rng, ph, coda=(i == n_syl - 1) or rng.random() < 0.15)
                                   for i in range(n_syl))
                plural = word + ph.plural_suffix if upos == "NOUN" else None
                if word not in taken and (plural is None or plural not in taken):
                    break
            else:  # pragma: no cover - the inventories are large enough
                raise RuntimeError(f"cannot find a free word form for {name!r} in {lang}")
            table[(name, "")] = word
            taken.add(word)
            if plural is not None:
                table[(name, "pl")] = plural
                taken.add(plural)
        forms[lang] = table
    return Lexicon(forms=forms, en_synonym_forms=syn, loanwords=frozenset(loans))


LEXICON: Lexicon = _build_lexicon()

NOUNS_BY_CLASS: dict[str, tuple[str, ...]] = {
    cls: tuple(s for s, _, c in _EN_NOUNS if c == cls) for cls in ("animate", "thing", "food", "place")
}
VERBS: tuple[str, ...] = tuple(b for b, _, _ in _EN_VERBS)
VERB_PATIENT: dict[str, str] = {b: c for b, _, c in _EN_VERBS}
ADJS_BY_CLASS: dict[str, tuple[str, ...]] = {
    cls: tuple(a for a, c in _EN_ADJS if c == cls) for cls in ("general", "animate", "thing")
}
ADVS: tuple[str, ...] = _EN_ADVS
ADPS: tuple[str, ...] = _EN_ADPS
PRONOUNS: tuple[str, ...] = tuple(p for p, _ in _EN_PRONS)
PRONOUN_NUMBER: dict[str, str] = dict(_EN_PRONS)

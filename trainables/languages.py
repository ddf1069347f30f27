"""Benchmark language lists as data: which languages each XTREME / XTREME-R task evaluates.

Codes are ISO 639-1 (what the benchmarks and the spec use); ``ISO639_3`` maps them to ISO 639-3
(what lang2vec / URIEL and Tatoeba file names use). Tatoeba names a few languages by an
individual-language code inside a macrolanguage (``cmn`` for zh, ``swh`` for sw, ``pes`` for fa);
``TATOEBA_CODES`` keeps those exceptions.

Sources: the XTREME paper (Hu et al., 2020, table 5) and the XTREME-R paper (Ruder et al., 2021,
table 8), checked against the task configs of ``google/xtreme`` on the Hugging Face hub.
"""
from __future__ import annotations

ISO639_3: dict[str, str] = {
    "af": "afr", "ar": "ara", "az": "aze", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell",
    "en": "eng", "es": "spa", "et": "est", "eu": "eus", "fa": "fas", "fi": "fin", "fr": "fra",
    "gu": "guj", "he": "heb", "hi": "hin", "ht": "hat", "hu": "hun", "id": "ind", "it": "ita",
    "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "lt": "lit", "ml": "mal",
    "mr": "mar", "ms": "msa", "my": "mya", "nl": "nld", "pa": "pan", "pl": "pol", "pt": "por",
    "qu": "que", "ro": "ron", "ru": "rus", "sw": "swa", "ta": "tam", "te": "tel", "th": "tha",
    "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd", "vi": "vie", "wo": "wol", "yo": "yor",
    "zh": "zho",
}
ISO639_1: dict[str, str] = {v: k for k, v in ISO639_3.items()}

# Tatoeba file names use these codes where they differ from ISO639_3.
TATOEBA_CODES: dict[str, str] = {**ISO639_3, "zh": "cmn", "sw": "swh", "fa": "pes"}


def _langs(text: str) -> tuple[str, ...]:
    return tuple(text.split())


XTREME_LANGUAGES = _langs(
    "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru sw "
    "ta te th tl tr ur vi yo zh")
XTREME_R_LANGUAGES = _langs(
    "af ar az bg bn de el en es et eu fa fi fr gu he hi ht hu id it ja jv ka kk ko lt ml mr ms my "
    "nl pa pl pt qu ro ru sw ta te th tl tr uk ur vi wo yo zh")

#: evaluation languages per task, in the benchmark's own lists
TASK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xnli": _langs("en ar bg de el es fr hi ru sw th tr ur vi zh"),
    "pawsx": _langs("en de es fr ja ko zh"),
    "udpos": _langs("af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta "
                    "te th tl tr ur vi yo zh"),
    "udpos_xtreme_r": _langs("af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko lt mr nl "
                             "pl pt ro ru ta te th tl tr uk ur vi wo yo zh"),
    "panx": XTREME_LANGUAGES,
    "panx_xtreme_r": _langs("af ar az bg bn de el en es et eu fa fi fr gu he hi hu id it ja jv ka kk "
                            "ko lt ml mr ms my nl pa pl pt qu ro ru sw ta te th tl tr uk ur vi yo zh"),
    "xquad": _langs("en ar de el es hi ro ru th tr vi zh"),
    "mlqa": _langs("en ar de es hi vi zh"),
    "tydiqa": _langs("en ar bn fi id ko ru sw te"),
    "bucc": _langs("de fr ru zh"),
    "tatoeba": _langs("af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl "
                      "pt ru sw ta te th tl tr ur vi zh"),
    "tatoeba_xtreme_r": _langs("af ar az bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko "
                               "lt ml mr nl pl pt ro ru sw ta te th tl tr uk ur vi zh"),
    "xcopa": _langs("et ht id it qu sw ta th tr vi zh"),
    "mewslix": _langs("ar de en es fa ja pl ro ta tr uk"),
    "lareqa": _langs("ar de el en es hi ru th tr vi zh"),
}


def task_languages(key: str) -> tuple[str, ...]:
    return TASK_LANGUAGES[key]


def iso639_3(code: str) -> str:
    """ISO 639-3 for an ISO 639-1 code (a 3-letter code is returned as it is)."""
    if len(code) == 3:
        return code
    try:
        return ISO639_3[code]
    except KeyError:
        raise KeyError(f"no ISO 639-3 code known for language {code!r}") from None

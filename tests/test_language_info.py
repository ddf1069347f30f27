"""Language metadata, URIEL typological distance and spec-style language selection."""
from __future__ import annotations

import numpy as np
import pytest

from sweep import languages as lg
from trainables.languages import ISO639_3, XTREME_R_LANGUAGES


def _raw(uriel: str, feature_set: str) -> list:
    """The URIEL vector straight from lang2vec, without sweep.languages' parsing."""
    return lg._l2v().get_features([uriel], feature_set)[uriel]


def test_table_covers_xtreme_r():
    table = lg.language_table()
    assert set(table) == set(XTREME_R_LANGUAGES) and len(table) == 50
    for code, info in table.items():
        assert info.iso639_3 == ISO639_3[code]
        assert 0 <= info.resource_class <= 5
        assert info.name and info.family and info.script


def test_known_facts():
    t = lg.language_table()
    assert (t["en"].resource_class, t["de"].family, t["de"].genus) == (5, "Indo-European",
                                                                       "Germanic")
    assert {c for c, i in t.items() if not i.xlmr} == {"ht", "qu", "wo", "yo"}
    assert (t["ru"].script, t["ar"].script, t["hi"].script) == ("Cyrillic", "Arabic",
                                                                "Devanagari")
    assert t["eu"].family == "Isolate"
    assert lg.language_info("deu") is t["de"] and lg.language_info("swh") is t["sw"]
    with pytest.raises(KeyError, match="xx"):
        lg.language_info("xx")


def test_every_language_has_uriel_vector():
    for code in XTREME_R_LANGUAGES:
        vec = lg.uriel_vector(code)
        assert len(vec) == 103 and None not in vec  # syntax_knn: imputed, no gaps


@pytest.mark.parametrize("lang,ref", [("de", "en"), ("ja", "en"), ("sw", "fr"), ("hi", "ur")])
def test_cosine_distance_by_hand(lang, ref):
    a = np.array(_raw(lg.language_info(lang).uriel, "syntax_knn"), float)
    b = np.array(_raw(lg.language_info(ref).uriel, "syntax_knn"), float)
    expected = 1 - (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
    assert lg.typological_distance(lang, ref) == pytest.approx(expected, abs=1e-12)


def test_distance_properties():
    assert lg.typological_distance("en", "en") == pytest.approx(0.0, abs=1e-12)
    assert lg.typological_distance("de") < lg.typological_distance("ja")  # German is closer
    assert lg.typological_distance("de", "ja") == pytest.approx(lg.typological_distance("ja", "de"))
    a = np.array(_raw("deu", "phonology_knn"), float)
    b = np.array(_raw("eng", "phonology_knn"), float)
    assert lg.typological_distance("de", feature_set="phonology_knn", metric="euclidean") == \
        pytest.approx(np.sqrt(((a - b) ** 2).sum()))


def test_wals_gaps_dropped_pairwise():
    a, b = _raw("jpn", "syntax_wals"), _raw("eng", "syntax_wals")
    keep = [(float(x), float(y)) for x, y in zip(a, b) if x != "--" and y != "--"]
    assert 0 < len(keep) < len(a)  # the test is only meaningful with gaps
    x, y = np.array(keep).T
    expected = 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
    assert lg.typological_distance("ja", feature_set="syntax_wals") == pytest.approx(expected)


def test_distance_errors():
    with pytest.raises(ValueError, match="metric.*cosine"):
        lg.typological_distance("de", metric="cosin")
    with pytest.raises(ValueError, match="no_such_set"):
        lg.typological_distance("de", feature_set="no_such_set")


LANGS = ("en", "de", "sw", "yo", "ru", "ja", "qu", "hi")


@pytest.mark.parametrize("criteria,expected", [
    ({"resource_class": "<=2"}, ("sw", "yo", "qu")),
    ({"resource_class": 5}, ("en", "de", "ja")),
    ({"resource_class": ">3"}, ("en", "de", "ru", "ja", "hi")),
    ({"family": "Indo-European"}, ("en", "de", "ru", "hi")),
    ({"family": ["niger-congo", "Quechuan"]}, ("sw", "yo", "qu")),
    ({"script": "Latin"}, ("en", "de", "sw", "yo", "qu")),
    ({"xlmr": True}, ("en", "de", "sw", "ru", "ja", "hi")),
    ({"xlmr": "false"}, ("yo", "qu")),
    ({"script": "Latin", "xlmr": True, "resource_class": "<3"}, ("sw",)),
    ({}, LANGS),
])
def test_select(criteria, expected):
    assert lg.select_languages(LANGS, criteria) == expected


def test_select_by_distance():
    near = lg.select_languages(LANGS, {"distance": "<0.2"})
    assert near == tuple(c for c in LANGS if lg.typological_distance(c) < 0.2)
    assert "en" in near and "ja" not in near


@pytest.mark.parametrize("criteria,message", [
    ({"resource_clas": 2}, "resource_clas.*did you mean 'resource_class'"),
    ({"famly": "Uralic"}, "famly.*did you mean 'family'"),
    ({"family": "Indo-Europen"}, "family.*'Indo-Europen'.*did you mean 'Indo-European'"),
    ({"script": "Latn"}, "script.*did you mean 'Latin'"),
    ({"resource_class": "lots"}, "resource_class.*'<=2'"),
    ({"resource_class": True}, "resource_class"),
    ({"xlmr": "maybe"}, "xlmr.*true or false"),
])
def test_select_errors(criteria, message):
    with pytest.raises(ValueError, match=message):
        lg.select_languages(LANGS, criteria)


def test_select_unknown_language():
    with pytest.raises(KeyError, match="xs"):
        lg.select_languages(("en", "xs"), {"xlmr": True})

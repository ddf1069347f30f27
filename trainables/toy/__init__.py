"""Toy XTREME: a small synthetic multilingual world for offline demos and tests.

``write_toy_xtreme(root)`` writes corpora and task datasets (XNLI-, PAWS-X-, UD-POS-,
chunking- and Tatoeba-like) for four languages: English-like ``en`` and three derived languages
with their own vocabularies and word orders (``xs`` SVO, ``xo`` SOV, ``xv`` VSO).
"""
from trainables.toy.world import (
    NLI_LABELS,
    SHARED_ANCHORS,
    TOY_LANGUAGES,
    lexicon_vocabulary,
    read_manifest,
    write_toy_xtreme,
)

__all__ = ["NLI_LABELS", "SHARED_ANCHORS", "TOY_LANGUAGES", "lexicon_vocabulary", "read_manifest",
           "write_toy_xtreme"]

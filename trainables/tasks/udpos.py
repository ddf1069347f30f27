"""UD-POS: universal part-of-speech tagging (Universal Dependencies v2.5), XTREME's POS task.

Hub: ``google/xtreme`` config ``udpos.<LanguageName>`` (its Parquet conversion's names, e.g.
``udpos.Afrikaans``; features ``tokens``, ``pos_tags`` with the 17 UPOS class labels; splits train,
validation, test) for XTREME's 33 languages. The XTREME-R additions lt pl ro uk wo have no
``google/xtreme`` config: loading one of them from the hub is a one-line error that says to set
``data_dir`` to UD CoNLL-U files. ``data_dir``: UD CoNLL-U files anywhere below it,
named ``<lang>_<treebank>-ud-<split>.conllu``; all treebanks of a language are concatenated
(sorted by file name), so English train = every English treebank's train split. Multiword-token
ranges and empty nodes are skipped. Scored like XTREME: span F1 as seqeval 0.0.12 computes it on
plain UPOS tags (main; each tag its own type, so CCONJ and SCONJ differ; see
``trainables.metrics.tagging``) and token accuracy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.formats import hub_tags, read_conllu, tagged_dataset
from trainables.languages import TASK_LANGUAGES
from trainables.tasks import register
from trainables.tasks.base import Task, TaskDataError, TaskInfo
from trainables.tasks.loading import Hub, parse_errors

if TYPE_CHECKING:
    import datasets

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
#: google/xtreme Parquet config names ``udpos.<name>`` (the dataset card's configs; the old loading
#: script spelled Afrikaans "Afrikans"); absent: no hub config
HUB_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian",
    "ja": "Japanese", "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch",
    "pt": "Portuguese", "ru": "Russian", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog",
    "tr": "Turkish", "ur": "Urdu", "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}


@register
class UdPos(Task):
    info = TaskInfo(
        name="udpos", family="tagging", languages=TASK_LANGUAGES["udpos_xtreme_r"], main_metric="f1",
        source="Universal Dependencies v2.5 (Nivre et al., 2020), UPOS as in XTREME",
        hub_id="google/xtreme:udpos.{LanguageName}",
        description="universal POS tagging (17 tags), zero-shot from English treebanks",
        language_sets=(("xtreme", TASK_LANGUAGES["udpos"]), ("xtreme_r", TASK_LANGUAGES["udpos_xtreme_r"])),
        benchmark_slot="udpos", benchmark_metric="f1",
    )
    labels = UPOS
    hub = Hub("google/xtreme", {language: f"udpos.{name}" for language, name in HUB_NAMES.items()})

    def read_files(self, split: str, language: str) -> datasets.Dataset:
        import datasets

        root = self.data_path()
        pattern = f"{language}_*-ud-{split}.conllu"
        files = sorted(root.rglob(pattern), key=lambda p: p.name)
        if not files:
            raise TaskDataError(f"task {self.name}: {split} split for language {language!r} not "
                                f"found at {root / '**' / pattern}")
        with parse_errors(self, split, language):
            parts = [tagged_dataset(read_conllu(path), self.labels, source=path) for path in files]
        return datasets.concatenate_datasets(parts)

    def from_hub(self, data: datasets.Dataset, split: str, language: str) -> datasets.Dataset:
        return hub_tags(data, "tokens", "pos_tags", self.labels)

    def files_hint(self, language: str) -> str:
        return f"a folder with UD CoNLL-U files named {language}_<treebank>-ud-{{train,dev,test}}.conllu"

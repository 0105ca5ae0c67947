"""Balances a training manifest with text augmentation (BiMER, Algorithm 1).

```
python -m bimer_tf.data.augment_text --manifest data/tweeteval/train.jsonl \
    --out data/tweeteval_aug --target 800
```

Per class, in this order:

1. Repeated sentences are dropped (case- and whitespace-insensitive).
2. A class with more rows than `target` is under-sampled to `target` (seeded).
3. A class with fewer rows is filled up with augmented copies of its *valid*
   sentences (two words or more, not only fillers such as "Mm-hmm." or "Okay
   okay"). Originals and methods take turns so each gets an equal share. A
   candidate is kept only when the cosine similarity of its sentence
   embedding to the original's is at least `min_similarity` (0.9) and below
   `max_similarity` (1.0: an unchanged sentence is no new sample). After
   `max_attempts` (10) failed candidates the original itself is copied
   (`augmentation` = "copy") and the report counts it. A small class with no
   valid sentence stays as it is, with a warning.

Methods (all through nlpaug):

- `synonym`: replaces about one word in five by one of its nearest
  neighbours in the text encoder's own wordpiece embedding table (whole-word
  entries only; no stopwords, special tokens or subword pieces). Offline.
  Context-free: it can pick an opposite ("negative" -> "positive") or a
  different word form ("blow" -> "blew") that the similarity filter lets
  through; `mlm` reads the context and is the better choice where it runs.
- `mlm`: masked-language-model substitution (`ContextualWordEmbsAug`) with a
  local Hugging Face fill-mask model folder (`--mlm-model DIR`).
- `backtranslation`: English -> other language -> English
  (`BackTranslationAug`) with two local translation model folders
  (`--backtranslation-models FROM_DIR,TO_DIR`).

`mlm` and `backtranslation` need `transformers` and `torch`; without them, or
without model folders, they are reported as unavailable (with how to enable
them) and the other methods share the work.

Augmented rows copy every field of their original except `id`, `text`,
`origin` (the original's id) and `augmentation` (the method). Their `audio`
is null unless `--keep-audio` is given: a paraphrase no longer says what the
recording says, so pairing the two would teach the speech branch and the text
branch different things.

Outputs `OUT/manifest.jsonl` and `OUT/augment_text_report.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import nlpaug.augmenter.word as naw
import numpy as np
from tqdm import tqdm

from bimer_tf.data.manifest import read_manifest, write_manifest
from bimer_tf.errors import InputError
from bimer_tf.pretrained.text_presets import OFFLINE_MINILM

METHODS = ("synonym", "mlm", "backtranslation")
COPY = "copy"  # `augmentation` of a row that repeats its original unchanged

# Words that carry no content on their own: a sentence made only of these
# ("Yeah.", "Mm-hmm.", "Okay okay", "Oh well") is not augmented.
FILLER_WORDS = frozenset(
    """
    ah aha ahh alright eh er erm hey hm hmm hmmm huh mhm mm mmm mm-hmm mmhmm
    no nope oh ok okay oops right so uh uh-huh uhm um umm well wow yeah yep yes
    """.split()
)
# Letters with inner apostrophes or hyphens ("don't", "mm-hmm") make one word.
_WORD = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*")

# A candidate whose similarity is within this of `max_similarity` counts as
# reaching it: the same sentence embeds to 1.0 only up to float32 round-off.
_SIMILARITY_TOLERANCE = 1e-6


@dataclass
class AugmentSettings:
    """What to generate and which candidates to keep."""

    target: int = 800  # rows per class in the output (the paper's 800)
    methods: tuple[str, ...] = METHODS
    min_similarity: float = 0.9
    max_similarity: float = 1.0  # exclusive
    max_attempts: int = 10  # candidates tried per needed sample
    seed: int = 1234
    keep_audio: bool = False
    # Share of tokens (words and the gaps between them) the word-level methods
    # replace: about one word in five, at least one, at most three.
    substitution_rate: float = 0.1
    max_substitutions: int = 3
    # Nearest wordpiece neighbours a word may be replaced by.
    neighbours: int = 5
    # Text encoder of the similarity filter and source of the synonym table.
    preset: str = OFFLINE_MINILM
    mlm_model: str | None = None
    backtranslation_models: tuple[str, str] | None = None

    def validate(self) -> None:
        if self.target < 1:
            raise InputError(f"--target must be at least 1, got {self.target}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise InputError(
                f"--methods: unknown {unknown or 'empty list'}; choose from {','.join(METHODS)}"
            )
        if not 0.0 <= self.min_similarity <= self.max_similarity <= 1.0:
            raise InputError(
                "similarity thresholds need 0 <= --min-similarity <= --max-similarity <= 1, got "
                f"{self.min_similarity} and {self.max_similarity}"
            )
        if self.max_attempts < 1:
            raise InputError(f"--max-attempts must be at least 1, got {self.max_attempts}")


# --------------------------------------------------------------------------- #
# Sentence checks
# --------------------------------------------------------------------------- #


def normalize_sentence(text: str) -> str:
    """The form in which two sentences count as repeats: lower case, single spaces."""
    return " ".join(text.lower().split())


def is_valid_for_augmentation(text: str) -> bool:
    """True for sentences of two or more words of which one at least is no filler."""
    words = _WORD.findall(text.lower())
    return len(words) >= 2 and any(word not in FILLER_WORDS for word in words)


# --------------------------------------------------------------------------- #
# Augmentation methods
# --------------------------------------------------------------------------- #


class MethodUnavailable(Exception):
    """A method cannot run here; `reason` says why and `remedy` how to enable it."""

    def __init__(self, reason: str, remedy: str):
        super().__init__(reason)
        self.reason = reason
        self.remedy = remedy


def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | FILLER_WORDS


# Mentions, links and words (with inner apostrophes) are tokens; whatever lies
# between them is kept verbatim as separator tokens, so joining the tokens
# gives back the exact text. nlpaug's default tokenizer splits "it's" and
# "@user" apart and joins them with spaces.
_SUBSTITUTION_TOKEN = re.compile(r"(@\w+|https?://\S+|[A-Za-z]+(?:'[A-Za-z]+)*)")


def _split_tokens(text: str) -> list[str]:
    return [piece for piece in _SUBSTITUTION_TOKEN.split(text) if piece]


def _join_tokens(tokens: list[str]) -> str:
    return "".join(tokens)


def _inflection(word: str) -> str:
    """The word's inflectional ending, a cheap stand-in for a part-of-speech match."""
    for ending in ("ing", "ed", "ly"):
        if word.endswith(ending) and len(word) > len(ending) + 2:
            return ending
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return "s"
    return ""


class WordpieceNeighbours:
    """Nearest whole-word neighbours in a BERT's wordpiece embedding table.

    Implements what nlpaug's `WordEmbsAug` asks of a word-embedding model
    (`get_vocab`, `predict`), so no word2vec file or gensim is needed.
    Neighbours are found by cosine similarity, computed when a word is first
    seen. Left out as candidates: stopwords, special tokens, subword pieces,
    words sharing the query's stem ("happy" -> "happier", "angry" ->
    "anger": grammar, not synonyms),
    negated forms ("happy" -> "unhappy") and words with another inflectional
    ending ("choose" -> "choices").
    """

    _NEGATING_PREFIXES = ("un", "in", "im", "ir", "il", "dis", "non")
    # Below about 0.4, wordpiece neighbours are loose associations and often
    # opposites ("love" -> "hate" 0.38, "happy" -> "miserable" 0.36).
    _MIN_TOKEN_SIMILARITY = 0.4

    def __init__(self, embeddings: np.ndarray, vocabulary: list[str], top_k: int = 5, stopwords=()):
        self.top_k = top_k
        stopwords = frozenset(stopwords)
        keep = [
            i for i, token in enumerate(vocabulary)
            if re.fullmatch(r"[a-z]{2,}", token) and token not in stopwords
        ]
        self.words = [vocabulary[i] for i in keep]
        self._index = {word: i for i, word in enumerate(self.words)}
        table = np.asarray(embeddings, dtype=np.float32)[keep]
        self._unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_embedder(cls, embedder, top_k: int = 5, stopwords=()) -> "WordpieceNeighbours":
        import keras

        table = keras.ops.convert_to_numpy(embedder.backbone.token_embedding.embeddings)
        return cls(table, embedder.tokenizer.get_vocabulary(), top_k=top_k, stopwords=stopwords)

    def get_vocab(self) -> list[str]:
        return self.words

    def neighbours(self, word: str) -> list[str]:
        """Up to `top_k` substitutes for a lower-case word, best first."""
        if word in self._cache:
            return self._cache[word]
        index = self._index.get(word)
        found = []
        if index is not None:
            similarity = self._unit @ self._unit[index]
            for j in np.argsort(-similarity)[1 : 20 * self.top_k]:
                if similarity[j] < self._MIN_TOKEN_SIMILARITY or len(found) == self.top_k:
                    break
                other = self.words[j]
                if (
                    self._same_stem(word, other)
                    or self._negation(word, other)
                    or _inflection(word) != _inflection(other)
                ):
                    continue
                found.append(other)
        self._cache[word] = found
        return found

    @staticmethod
    def _same_stem(word: str, other: str) -> bool:
        shared = len(os.path.commonprefix([word, other]))
        shorter = min(len(word), len(other))
        # "happier", "sadness", and also "anger" or "choice" (3 letters shared,
        # 3 or fewer left over).
        return shared >= 4 or shared == shorter or (shared >= 3 and shorter - shared <= 3)

    @classmethod
    def _negation(cls, word: str, other: str) -> bool:
        return any(other == p + word or word == p + other for p in cls._NEGATING_PREFIXES)

    def has_neighbours(self, token: str) -> bool:
        return bool(self.neighbours(token.lower()))

    def predict(self, word: str, n: int = 1) -> list[str]:
        """nlpaug's hook: substitutes cased like `word` ("Happy" -> "Glad")."""
        candidates = self.neighbours(word.lower())
        if word.isupper() and len(word) > 1:
            return [c.upper() for c in candidates]
        if word[:1].isupper():
            return [c.capitalize() for c in candidates]
        return candidates


class WordpieceSynonymAug(naw.WordEmbsAug):
    """nlpaug's word-embedding substitution over `WordpieceNeighbours`."""

    def skip_aug(self, token_idxes, tokens):
        # WordEmbsAug keeps tokens found by `token in model.get_vocab()`, a
        # case-sensitive scan of a list; ask the neighbour table instead,
        # which also leaves out words without a usable neighbour.
        return [i for i in token_idxes if self.model.has_neighbours(tokens[i])]


def build_synonym_augmenter(neighbours: WordpieceNeighbours, settings: AugmentSettings) -> WordpieceSynonymAug:
    return WordpieceSynonymAug(
        model_type="word2vec",  # only checked against nlpaug's list; `model` is ours
        model=neighbours,
        action="substitute",
        top_k=settings.neighbours,
        aug_p=settings.substitution_rate,
        aug_min=1,
        aug_max=settings.max_substitutions,
        tokenizer=_split_tokens,
        reverse_tokenizer=_join_tokens,
        name="synonym",
    )


def _local_model_dir(path: str, flag: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{flag} {path}: not a local Hugging Face model folder (no config.json); "
            "save one with `model.save_pretrained(DIR)` and `tokenizer.save_pretrained(DIR)`"
        )
    return folder


def _check_torch_method(configured: bool, flag: str, example: str) -> None:
    """Raises MethodUnavailable unless `method` has its models and packages."""
    missing = [name for name in ("transformers", "torch") if importlib.util.find_spec(name) is None]
    problems = ([] if configured else [f"no model configured ({flag})"]) + (
        [f"{' and '.join(missing)} not installed"] if missing else []
    )
    if problems:
        raise MethodUnavailable(
            "; ".join(problems),
            f"pip install transformers torch and pass {flag} {example}",
        )


def check_method(method: str, settings: AugmentSettings) -> None:
    """Raises MethodUnavailable when `method` cannot run here; loads nothing.

    A configured model folder that is not one is bad input (InputError),
    whether or not the packages to run it are installed.
    """
    if method == "mlm":
        if settings.mlm_model is not None:
            _local_model_dir(settings.mlm_model, "--mlm-model")
        _check_torch_method(
            settings.mlm_model is not None, "--mlm-model DIR",
            "(a local fill-mask model folder such as bert-base-uncased)",
        )
    elif method == "backtranslation":
        for path in settings.backtranslation_models or ():
            _local_model_dir(path, "--backtranslation-models")
        _check_torch_method(
            settings.backtranslation_models is not None, "--backtranslation-models FROM_DIR,TO_DIR",
            "(local folders of e.g. Helsinki-NLP/opus-mt-en-de and opus-mt-de-en)",
        )


def unavailable_methods(settings: AugmentSettings) -> dict[str, dict]:
    """{method: {"reason", "enable"}} for each requested method that cannot run."""
    unavailable = {}
    for method in settings.methods:
        try:
            check_method(method, settings)
        except MethodUnavailable as error:
            unavailable[method] = {"reason": error.reason, "enable": error.remedy}
    return unavailable


def build_mlm_augmenter(settings: AugmentSettings):
    """Masked-LM word substitution (nlpaug `ContextualWordEmbsAug`), local model only."""
    folder = Path(settings.mlm_model)
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type not in ("bert", "distilbert", "roberta"):
        raise InputError(
            f"--mlm-model {folder}: model_type '{model_type}' is not supported by nlpaug; "
            "use a BERT, DistilBERT or RoBERTa fill-mask model"
        )
    return naw.ContextualWordEmbsAug(
        model_path=str(folder),
        model_type=model_type,
        action="substitute",
        top_k=settings.neighbours,
        aug_p=settings.substitution_rate,
        aug_min=1,
        aug_max=settings.max_substitutions,
        stopwords=sorted(_stopwords()),
        device="cpu",
        name="mlm",
    )


def build_backtranslation_augmenter(settings: AugmentSettings):
    """English -> pivot -> English (nlpaug `BackTranslationAug`), local models only."""
    source, back = settings.backtranslation_models
    return naw.BackTranslationAug(
        from_model_name=source, to_model_name=back, device="cpu", name="backtranslation"
    )


def build_augmenters(settings: AugmentSettings, embedder) -> dict:
    """{method: nlpaug augmenter} for the requested methods that can run here."""
    available = [m for m in settings.methods if m not in unavailable_methods(settings)]
    augmenters = {}
    if "synonym" in available:
        neighbours = WordpieceNeighbours.from_embedder(embedder, top_k=settings.neighbours, stopwords=_stopwords())
        augmenters["synonym"] = build_synonym_augmenter(neighbours, settings)
    if "mlm" in available or "backtranslation" in available:
        # Local folders only: never reach for the model hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch

        torch.manual_seed(settings.seed)
    if "mlm" in available:
        augmenters["mlm"] = build_mlm_augmenter(settings)
    if "backtranslation" in available:
        augmenters["backtranslation"] = build_backtranslation_augmenter(settings)
    return augmenters


# --------------------------------------------------------------------------- #
# Balancing
# --------------------------------------------------------------------------- #


def _empty_class_report(methods) -> dict:
    return {
        "originals": 0,
        "duplicates_dropped": 0,
        "after_deduplication": 0,
        "valid_for_augmentation": 0,
        "invalid_for_augmentation": 0,
        "invalid_examples": [],
        "needed": 0,
        "generated": {method: 0 for method in methods},
        "candidates": 0,
        "rejected": {"too_dissimilar": 0, "identical": 0, "duplicate": 0},
        "kept_original_after_max_attempts": 0,
        "under_sampled_away": 0,
        "final": 0,
        "warning": None,
    }


def _drop_repeats(rows: list[dict]) -> list[dict]:
    """First occurrence of each sentence, in manifest order."""
    seen, kept = set(), []
    for row in rows:
        key = normalize_sentence(row["text"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _augmented_id(origin: str, taken: set[str]) -> str:
    number = 1
    while f"{origin}_aug{number}" in taken:
        number += 1
    taken.add(f"{origin}_aug{number}")
    return f"{origin}_aug{number}"


def _plan_slots(num_originals: int, methods: list[str], needed: int) -> list[tuple[int, str]]:
    """(original index, method) of each needed sample, in equal shares.

    Sample k takes original i = k mod n in round r = k // n, with method
    (i + r) mod m: every original is used once before any is used twice,
    neighbours in a round alternate methods, and an original used again gets
    the next method rather than the same one.
    """
    n, m = num_originals, len(methods)
    return [(k % n, methods[(k % n + k // n) % m]) for k in range(needed)]


def _generate(texts, slots, augmenters, embedder, settings, seen, report, progress) -> dict[int, str]:
    """Tries up to `max_attempts` candidates per slot; returns {slot: accepted text}.

    Each attempt batches the pending slots of every method and embeds all
    their candidates in one call. `seen` holds the class's normalised
    sentences; accepted ones are added so no two rows repeat.
    """
    used = sorted({index for index, _ in slots})
    original_vectors = dict(zip(used, embedder.embed([texts[i] for i in used])))
    accepted: dict[int, str] = {}
    pending = list(range(len(slots)))
    for _ in range(settings.max_attempts):
        if not pending:
            break
        candidates = {}
        for method, augmenter in augmenters.items():
            mine = [k for k in pending if slots[k][1] == method]
            if mine:
                outputs = augmenter.augment([texts[slots[k][0]] for k in mine])
                if len(outputs) != len(mine):
                    raise RuntimeError(f"augmenter '{method}' returned {len(outputs)} texts for {len(mine)} inputs")
                candidates.update(zip(mine, outputs))
        vectors = embedder.embed([candidates[k] for k in pending])
        still_pending = []
        for k, vector in zip(pending, vectors):
            index, method = slots[k]
            similarity = float(vector @ original_vectors[index])
            key = normalize_sentence(candidates[k])
            report["candidates"] += 1
            if key == normalize_sentence(texts[index]) or (
                similarity >= settings.max_similarity - _SIMILARITY_TOLERANCE
            ):
                report["rejected"]["identical"] += 1
            elif similarity < settings.min_similarity:
                report["rejected"]["too_dissimilar"] += 1
            elif key in seen:
                report["rejected"]["duplicate"] += 1
            else:
                seen.add(key)
                accepted[k] = candidates[k]
                report["generated"][method] += 1
                progress.update(1)
                continue
            still_pending.append(k)
        pending = still_pending
    report["kept_original_after_max_attempts"] = len(pending)
    progress.update(len(pending))
    return accepted


def _fill_class(kept, valid, needed, augmenters, embedder, settings, report, taken_ids, progress) -> list[dict]:
    """`needed` new rows made from `valid`, the augmentable rows among `kept`."""
    slots = _plan_slots(len(valid), list(augmenters), needed)
    texts = [row["text"] for row in valid]
    seen = {normalize_sentence(row["text"]) for row in kept}
    accepted = _generate(texts, slots, augmenters, embedder, settings, seen, report, progress)
    rows = []
    for k, (index, method) in enumerate(slots):
        original = valid[index]
        row = dict(original)
        row["id"] = _augmented_id(original["id"], taken_ids)
        row["origin"] = original["id"]
        row["text"] = accepted.get(k, original["text"])
        row["augmentation"] = method if k in accepted else COPY
        if not settings.keep_audio:
            row["audio"] = None
        rows.append(row)
    return rows


def augment_manifest(rows: list[dict], settings: AugmentSettings, embedder=None, augmenters=None):
    """Balances `rows` to `settings.target` rows per class.

    Args:
        rows: manifest rows (a training split: never augment evaluation data).
        settings: targets and thresholds.
        embedder: a `SentenceEmbedder`; loaded from `settings.preset` when
            needed and None.
        augmenters: {method: object with `augment(list[str]) -> list[str]`};
            built from `settings.methods` when None.

    Returns:
        (output rows, report dict).
    """
    settings.validate()
    if not rows:
        raise InputError("the manifest has no rows; point --manifest at a training manifest")
    without_text = [row["id"] for row in rows if not (row.get("text") or "").strip()]
    by_class: dict[str, list[dict]] = {}
    for row in rows:
        if (row.get("text") or "").strip():
            by_class.setdefault(row["label"], []).append(row)
    if not by_class:
        raise InputError(
            f"none of the manifest's {len(rows)} rows has text; text augmentation needs a "
            "manifest with a `text` field (transcribe audio-only corpora first)"
        )

    unavailable = unavailable_methods(settings) if augmenters is None else {}
    methods = tuple(augmenters) if augmenters is not None else settings.methods
    reports, kept_by_class, valid_by_class = {}, {}, {}
    for label, class_rows in by_class.items():
        kept = kept_by_class[label] = _drop_repeats(class_rows)
        valid = valid_by_class[label] = [row for row in kept if is_valid_for_augmentation(row["text"])]
        reports[label] = _empty_class_report(methods)
        reports[label].update(
            originals=len(class_rows),
            duplicates_dropped=len(class_rows) - len(kept),
            after_deduplication=len(kept),
            valid_for_augmentation=len(valid),
            invalid_for_augmentation=len(kept) - len(valid),
            invalid_examples=[row["text"] for row in kept if not is_valid_for_augmentation(row["text"])][:5],
            needed=max(settings.target - len(kept), 0) if valid else 0,
        )

    total_needed = sum(report["needed"] for report in reports.values())
    if total_needed:
        if augmenters is None and set(unavailable) == set(settings.methods):
            details = "; ".join(f"{m}: {u['reason']}; to enable: {u['enable']}" for m, u in unavailable.items())
            raise InputError(f"no augmentation method is available ({details})")
        if embedder is None:
            from bimer_tf.pretrained.sentence_embedder import SentenceEmbedder

            embedder = SentenceEmbedder(settings.preset)
        if augmenters is None:
            augmenters = build_augmenters(settings, embedder)

    # nlpaug draws from Python's and NumPy's global generators.
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    sampler = np.random.default_rng(settings.seed)
    taken_ids = {row["id"] for row in rows}
    output = []
    with tqdm(total=total_needed, desc="augmenting", unit="sentence", disable=not total_needed) as progress:
        for label, kept in kept_by_class.items():
            report, valid = reports[label], valid_by_class[label]
            if len(kept) > settings.target:
                chosen = np.sort(sampler.choice(len(kept), size=settings.target, replace=False))
                report["under_sampled_away"] = len(kept) - settings.target
                class_output = [kept[i] for i in chosen]
            elif report["needed"]:
                order = sampler.permutation(len(valid))
                valid = [valid[i] for i in order]
                class_output = kept + _fill_class(
                    kept, valid, report["needed"], augmenters, embedder, settings, report, taken_ids, progress
                )
            else:
                class_output = kept
                if len(kept) < settings.target:
                    report["warning"] = (
                        f"class '{label}' has {len(kept)} rows, fewer than the target {settings.target}, "
                        f"and no sentence valid for augmentation; it stays at {len(kept)}"
                    )
            report["final"] = len(class_output)
            output.extend(class_output)

    candidates = sum(r["candidates"] for r in reports.values())
    accepted = sum(sum(r["generated"].values()) for r in reports.values())
    summary = {
        "rows_seen": len(rows),
        "rows_without_text": {"count": len(without_text), "ids": without_text[:20]},
        "rows_written": len(output),
        "target": settings.target,
        "thresholds": {
            "min_similarity": settings.min_similarity,
            "max_similarity_exclusive": settings.max_similarity,
            "max_attempts": settings.max_attempts,
        },
        "seed": settings.seed,
        "keep_audio": settings.keep_audio,
        "methods_requested": list(methods),
        "methods_used": list(augmenters or {}),
        "methods_unavailable": unavailable,
        "candidates": candidates,
        "acceptance_rate": round(accepted / candidates, 4) if candidates else None,
        "classes": reports,
        "warnings": [r["warning"] for r in reports.values() if r["warning"]],
    }
    return output, summary


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def _format_summary(report: dict) -> str:
    methods = report["methods_requested"]
    header = ["class", "originals", "repeats", "valid", "invalid", *methods, "copies", "removed", "final"]
    table = [header]
    for label, r in report["classes"].items():
        table.append([
            label, r["originals"], r["duplicates_dropped"], r["valid_for_augmentation"],
            r["invalid_for_augmentation"], *(r["generated"][m] for m in methods),
            r["kept_original_after_max_attempts"], r["under_sampled_away"], r["final"],
        ])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(f"{str(cell):>{width}}" for cell, width in zip(row, widths)) for row in table]
    lines.append(
        f"rows seen {report['rows_seen']}, skipped without text {report['rows_without_text']['count']}, "
        f"written {report['rows_written']}"
    )
    rate = report["acceptance_rate"]
    if report["candidates"]:
        lines.append(f"candidates {report['candidates']}, accepted {rate:.1%}")
    for label, r in report["classes"].items():
        if r["kept_original_after_max_attempts"]:
            lines.append(
                f"{label}: kept original after {report['thresholds']['max_attempts']} attempts "
                f"{r['kept_original_after_max_attempts']} times"
            )
    for method, why in report["methods_unavailable"].items():
        lines.append(f"method {method} unavailable: {why['reason']}; to enable: {why['enable']}")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(lines)


def _parse_methods(value: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _parse_model_pair(value: str) -> tuple[str, str]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError("expected FROM_DIR,TO_DIR")
    return parts[0], parts[1]


def build_parser() -> argparse.ArgumentParser:
    defaults = AugmentSettings()
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.augment_text",
        description="Balance a training manifest: drop repeats, under-sample large classes, "
        "fill small ones with similarity-filtered text augmentation.",
    )
    parser.add_argument("--manifest", required=True, help="training manifest (JSON Lines)")
    parser.add_argument("--out", required=True, help="output folder for manifest.jsonl and the report")
    parser.add_argument("--target", type=int, default=defaults.target, help="rows per class (default %(default)s)")
    parser.add_argument(
        "--methods", type=_parse_methods, default=defaults.methods,
        help=f"comma-separated subset of {','.join(METHODS)} (default: all; unavailable ones are reported)",
    )
    parser.add_argument("--min-similarity", type=float, default=defaults.min_similarity)
    parser.add_argument("--max-similarity", type=float, default=defaults.max_similarity, help="exclusive")
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--keep-audio", action="store_true",
        help="keep the original's audio path on augmented rows (default: null, since a "
        "paraphrase no longer matches the recording's words)",
    )
    parser.add_argument("--mlm-model", metavar="DIR", help="local fill-mask model folder for the mlm method")
    parser.add_argument(
        "--backtranslation-models", metavar="FROM_DIR,TO_DIR", type=_parse_model_pair,
        help="local translation model folders (English -> pivot, pivot -> English)",
    )
    parser.add_argument(
        "--preset", default=OFFLINE_MINILM,
        help="text encoder for similarity and synonyms (default %(default)s)",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    settings = AugmentSettings(
        target=args.target,
        methods=args.methods,
        min_similarity=args.min_similarity,
        max_similarity=args.max_similarity,
        max_attempts=args.max_attempts,
        seed=args.seed,
        keep_audio=args.keep_audio,
        mlm_model=args.mlm_model,
        backtranslation_models=args.backtranslation_models,
        preset=args.preset,
    )
    settings.validate()
    out_dir = Path(args.out)
    if (out_dir / "manifest.jsonl").resolve() == Path(args.manifest).resolve():
        raise InputError(f"--out {out_dir} would overwrite the input manifest; choose another folder")
    rows = read_manifest(args.manifest)
    started = time.perf_counter()
    output, report = augment_manifest(rows, settings)
    report["manifest"] = str(Path(args.manifest).resolve())
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(output, out_dir / "manifest.jsonl")
    (out_dir / "augment_text_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(_format_summary(report))
    print(f"wrote {out_dir / 'manifest.jsonl'} and augment_text_report.json in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import quiet_startup, run_main

    quiet_startup()  # before the sentence embedder imports TensorFlow
    raise SystemExit(run_main(main))

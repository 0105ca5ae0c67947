"""Text augmentation (BiMER Algorithm 1) with the real offline MiniLM."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from bimer_tf.cli import run_main
from bimer_tf.data import augment_text
from bimer_tf.data.augment_text import (
    COPY,
    AugmentSettings,
    augment_manifest,
    build_augmenters,
    is_valid_for_augmentation,
    unavailable_methods,
)
from bimer_tf.data.manifest import make_row, read_manifest, write_manifest

FLIGHT = "I can't believe they cancelled my flight again."
FLIGHT_PARAPHRASE = "I can't believe they canceled my flight once more."
UNRELATED = "The recipe needs two cups of flour."


@pytest.fixture(scope="module")
def embedder():
    from bimer_tf.pretrained.sentence_embedder import SentenceEmbedder

    return SentenceEmbedder()


@pytest.fixture(scope="module")
def synonym(embedder):
    return build_augmenters(AugmentSettings(methods=("synonym",)), embedder)["synonym"]


class ScriptedAugmenter:
    """Returns the scripted candidates in turn, whatever it is given."""

    def __init__(self, candidates):
        self.candidates = list(candidates)

    def augment(self, texts):
        return [self.candidates.pop(0) for _ in texts]


class TaggingAugmenter:
    """Appends a tag and a counter, so every candidate is new; records its inputs."""

    def __init__(self, tag):
        self.tag = tag
        self.inputs = []

    def augment(self, texts):
        start = len(self.inputs)
        self.inputs.extend(texts)
        return [f"{text} {self.tag}{start + i}" for i, text in enumerate(texts)]


def rows_for(texts_by_label: dict, **fields) -> list[dict]:
    return [
        make_row(f"{label}-{i}", label, text=text, corpus="test", speaker=f"spk{i % 2}", session=1, **fields)
        for label, texts in texts_by_label.items()
        for i, text in enumerate(texts)
    ]


ANGER = [
    "The referee ignored every single foul in the second half.",
    "They raised the rent again without any warning at all.",
    "My neighbour keeps parking his truck across my driveway.",
    "Customer service hung up on me for the third time today.",
    "The new update deleted all of my saved photographs.",
    "Someone stole my bicycle right outside the library.",
]
JOY = [
    "We finally adopted a little puppy from the shelter today.",
    "My sister passed her driving test on the first try.",
    "The concert last night was absolutely wonderful and loud.",
]


def test_embedder_paraphrases_close_unrelated_far(embedder):
    sentences = [
        FLIGHT, FLIGHT_PARAPHRASE, UNRELATED,
        "A man is playing a guitar.", "Someone is playing the guitar.", "The stock market fell sharply today.",
    ]
    vectors = embedder.embed(sentences)
    assert vectors.shape == (6, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = vectors @ vectors.T
    assert 0.83 <= cosine[3, 4] <= 0.97  # paraphrases
    assert 0.9 <= cosine[0, 1] < 0.99
    assert abs(cosine[0, 2]) < 0.15 and abs(cosine[3, 5]) < 0.15  # unrelated
    # Padding is masked: a sentence embeds the same alone and beside a long one.
    alone = embedder.embed(["A man is playing a guitar."])[0]
    np.testing.assert_allclose(alone, vectors[3], atol=1e-4)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.parametrize(
    "text, valid",
    [
        ("Yeah.", False),
        ("Mm-hmm.", False),
        ("Oh.", False),
        ("Okay okay", False),
        ("Oh well, yeah.", False),
        ("revenge", False),
        ("I'm so angry!", True),
        ("Okay, that hurts.", True),
        (FLIGHT, True),
    ],
)
def test_validity_check(text, valid):
    assert is_valid_for_augmentation(text) is valid


def test_wordpiece_neighbours_are_whole_words_without_inflections_or_negations(synonym):
    neighbours = synonym.model
    assert "glad" in neighbours.neighbours("happy")
    for word in ("happy", "angry", "great"):
        found = neighbours.neighbours(word)
        assert found and all(other.isalpha() and other.islower() for other in found)
        assert not {"happier", "happiness", "unhappy", "anger", "angrily", "greater"} & set(found)
    assert neighbours.neighbours("the") == []  # stopwords are never replaced
    assert neighbours.predict("Happy")[0] == "Glad" and neighbours.predict("HAPPY")[0] == "GLAD"


def test_synonym_substitution_keeps_mentions_links_and_spacing(synonym):
    text = "@user it's  a terrible, terrible day!! https://t.co/xyz"
    assert augment_text._join_tokens(augment_text._split_tokens(text)) == text
    for candidate in synonym.augment([text] * 5):
        assert candidate.startswith("@user it's  a ") and candidate.endswith("!! https://t.co/xyz")
        assert candidate != text


def test_duplicates_dropped_case_and_whitespace_insensitive():
    rows = rows_for({"joy": ["Hello there friend.", "  hello   there FRIEND. ", "A different sentence here."]})
    output, report = augment_manifest(rows, AugmentSettings(target=2))
    joy = report["classes"]["joy"]
    assert joy["originals"] == 3 and joy["duplicates_dropped"] == 1 and joy["final"] == 2
    assert [row["id"] for row in output] == ["joy-0", "joy-2"]


def test_similarity_filter_rejects_identical_and_dissimilar_accepts_paraphrase(embedder):
    rows = rows_for({"joy": [FLIGHT], "anger": ANGER[:2]})
    script = ScriptedAugmenter([FLIGHT, UNRELATED, FLIGHT_PARAPHRASE])
    output, report = augment_manifest(rows, AugmentSettings(target=2), embedder, {"synonym": script})
    joy = report["classes"]["joy"]
    assert joy["rejected"] == {"identical": 1, "too_dissimilar": 1, "duplicate": 0}
    assert joy["generated"] == {"synonym": 1} and joy["kept_original_after_max_attempts"] == 0
    (augmented,) = [row for row in output if row["augmentation"]]
    assert augmented["text"] == FLIGHT_PARAPHRASE and augmented["origin"] == "joy-0"
    assert report["acceptance_rate"] == pytest.approx(1 / 3, abs=1e-3)


def test_candidate_repeating_another_sentence_is_rejected(embedder):
    beach = ["I love sunny mornings at the beach.", "I love sunny mornings on the beach."]
    rows = rows_for({"joy": beach})
    settings = AugmentSettings(target=3, max_attempts=2)
    output, report = augment_manifest(rows, settings, embedder, {"synonym": ScriptedAugmenter(beach)})
    joy = report["classes"]["joy"]
    # Whichever original was drawn, one candidate is itself and one the other sentence.
    assert joy["rejected"] == {"identical": 1, "too_dissimilar": 0, "duplicate": 1}
    assert joy["kept_original_after_max_attempts"] == 1
    copy = output[-1]
    assert copy["augmentation"] == COPY and copy["text"] == beach[int(copy["origin"].split("-")[1])]


def test_exact_counts_under_sampling_and_augmented_fields(embedder, synonym):
    sadness = ["I miss my grandmother more than words can say.", "The house feels empty since everyone left."]
    rows = rows_for({"anger": ANGER, "joy": JOY, "sadness": sadness}, audio="/data/clip.wav")
    output, report = augment_manifest(rows, AugmentSettings(target=4), embedder, {"synonym": synonym})

    assert Counter(row["label"] for row in output) == {"anger": 4, "joy": 4, "sadness": 4}
    assert report["classes"]["anger"]["under_sampled_away"] == 2
    assert {row["id"] for row in output if row["label"] == "anger"} <= {f"anger-{i}" for i in range(6)}
    assert len({row["id"] for row in output}) == len(output)

    by_id = {row["id"]: row for row in rows}
    augmented = [row for row in output if row["augmentation"] is not None]
    assert len(augmented) == 1 + 2  # joy needs one, sadness two
    assert report["classes"]["sadness"]["generated"]["synonym"] >= 1
    for row in augmented:
        original = by_id[row["origin"]]
        assert row["augmentation"] in ("synonym", COPY)
        assert row["audio"] is None  # text-only unless keep_audio
        for name in ("label", "speaker", "session", "corpus"):
            assert row[name] == original[name]
        if row["augmentation"] == "synonym":
            assert row["text"] != original["text"]
    originals = [row for row in output if row["augmentation"] is None]
    assert all(row["audio"] == "/data/clip.wav" and row["origin"] == row["id"] for row in originals)


def test_keep_audio_keeps_the_original_recording(embedder):
    rows = rows_for({"joy": JOY[:2]}, audio="/data/clip.wav")
    settings = AugmentSettings(target=3, min_similarity=0.0, keep_audio=True)
    output, _ = augment_manifest(rows, settings, embedder, {"synonym": TaggingAugmenter("x")})
    assert output[-1]["augmentation"] == "synonym" and output[-1]["audio"] == "/data/clip.wav"


def test_falls_back_to_original_after_max_attempts(embedder, synonym):
    rows = rows_for({"joy": JOY})
    settings = AugmentSettings(target=5, min_similarity=0.99999, max_attempts=3)
    output, report = augment_manifest(rows, settings, embedder, {"synonym": synonym})
    joy = report["classes"]["joy"]
    assert joy["kept_original_after_max_attempts"] == 2 and joy["candidates"] == 2 * 3
    assert joy["final"] == 5
    copies = output[3:]
    assert all(row["augmentation"] == COPY for row in copies)
    assert all(row["text"] == JOY[int(row["origin"].split("-")[1])] for row in copies)


def test_round_robin_gives_originals_and_methods_equal_shares(embedder):
    rows = rows_for({"joy": JOY})
    methods = {"synonym": TaggingAugmenter("s"), "backtranslation": TaggingAugmenter("b")}
    settings = AugmentSettings(target=3 + 12, min_similarity=0.0)
    output, report = augment_manifest(rows, settings, embedder, methods)
    assert report["classes"]["joy"]["generated"] == {"synonym": 6, "backtranslation": 6}
    pairs = Counter((row["origin"], row["augmentation"]) for row in output if row["augmentation"])
    assert set(pairs.values()) == {2} and len(pairs) == 3 * 2  # every original x method twice


def test_same_seed_same_output(embedder, synonym):
    rows = rows_for({"anger": ANGER, "joy": JOY})
    first, _ = augment_manifest(rows, AugmentSettings(target=5, seed=7), embedder, {"synonym": synonym})
    again, _ = augment_manifest(rows, AugmentSettings(target=5, seed=7), embedder, {"synonym": synonym})
    other, _ = augment_manifest(rows, AugmentSettings(target=5, seed=8), embedder, {"synonym": synonym})
    assert first == again
    assert first != other


def test_unavailable_methods_name_reason_and_remedy():
    unavailable = unavailable_methods(AugmentSettings())
    assert set(unavailable) == {"mlm", "backtranslation"}
    assert "--mlm-model" in unavailable["mlm"]["reason"]
    assert "--backtranslation-models" in unavailable["backtranslation"]["enable"]


def test_rows_without_text_and_classes_without_valid_sentences_are_reported(embedder):
    rows = rows_for({"joy": JOY, "neutral": ["Yeah.", "Mm-hmm."]})
    rows.append(make_row("no-text", "joy", text=None, corpus="test"))
    rows.append(make_row("empty-text", "joy", text="  ", corpus="test"))
    settings = AugmentSettings(target=4, min_similarity=0.0)
    output, report = augment_manifest(rows, settings, embedder, {"synonym": TaggingAugmenter("t")})
    assert report["rows_without_text"] == {"count": 2, "ids": ["no-text", "empty-text"]}
    assert report["rows_seen"] == 2 + sum(c["originals"] for c in report["classes"].values())
    neutral = report["classes"]["neutral"]
    assert neutral["invalid_for_augmentation"] == 2 and neutral["final"] == 2
    assert "no sentence valid for augmentation" in report["warnings"][0]
    assert report["classes"]["joy"]["final"] == 4 and len(output) == 6


@pytest.fixture
def train_manifest(tmp_path):
    return write_manifest(rows_for({"anger": ANGER[:4], "joy": JOY[:2]}), tmp_path / "train.jsonl")


def test_cli_writes_manifest_and_report(train_manifest, tmp_path, embedder, monkeypatch, capsys):
    # Reuse the module's embedder instead of loading MiniLM a second time.
    monkeypatch.setattr("bimer_tf.pretrained.sentence_embedder.SentenceEmbedder", lambda preset: embedder)
    out = tmp_path / "balanced"
    argv = ["--manifest", str(train_manifest), "--out", str(out), "--target", "3", "--min-similarity", "0.5"]
    assert run_main(augment_text.main, argv) == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert Counter(row["label"] for row in rows) == {"anger": 3, "joy": 3}
    report = json.loads((out / "augment_text_report.json").read_text())
    assert report["thresholds"] == {"min_similarity": 0.5, "max_similarity_exclusive": 1.0, "max_attempts": 10}
    assert set(report["methods_unavailable"]) == {"mlm", "backtranslation"}
    assert report["methods_used"] == ["synonym"]
    printed = capsys.readouterr().out
    assert "method mlm unavailable" in printed and "method backtranslation unavailable" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "0"], "--target must be at least 1"),
        (["--methods", "synonym,thesaurus"], "unknown ['thesaurus']"),
        (["--min-similarity", "0.95", "--max-similarity", "0.9"], "similarity thresholds"),
        (["--methods", "mlm"], "no augmentation method is available"),
        (["--mlm-model", "/nonexistent/mlm"], "not a local Hugging Face model folder"),
    ],
)
def test_cli_bad_input_exits_2(train_manifest, tmp_path, extra, message, embedder, monkeypatch, capsys):
    monkeypatch.setattr("bimer_tf.pretrained.sentence_embedder.SentenceEmbedder", lambda preset: embedder)
    argv = ["--manifest", str(train_manifest), "--out", str(tmp_path / "out"), "--target", "3", *extra]
    assert run_main(augment_text.main, argv) == 2
    assert message in capsys.readouterr().err


def test_cli_malformed_argument_exits_2(train_manifest, tmp_path, capsys):
    argv = ["--manifest", str(train_manifest), "--out", str(tmp_path), "--backtranslation-models", "/only/one"]
    with pytest.raises(SystemExit) as exit_info:  # argparse's own exit, also status 2
        run_main(augment_text.main, argv)
    assert exit_info.value.code == 2 and "expected FROM_DIR,TO_DIR" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_its_input(train_manifest, capsys):
    manifest = train_manifest.parent / "manifest.jsonl"
    train_manifest.rename(manifest)
    assert run_main(augment_text.main, ["--manifest", str(manifest), "--out", str(manifest.parent)]) == 2
    assert "would overwrite the input manifest" in capsys.readouterr().err


def test_cli_empty_or_missing_manifest_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run_main(augment_text.main, ["--manifest", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no rows" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    assert run_main(augment_text.main, ["--manifest", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert "manifest not found" in capsys.readouterr().err

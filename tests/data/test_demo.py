"""The synthetic demo corpus: layout, determinism, caching, split and prosody."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bimer_tf.cli import run_main
from bimer_tf.data import demo
from bimer_tf.data.demo.__main__ import main as demo_main
from bimer_tf.data.manifest import read_manifest, read_splits
from bimer_tf.audio.wav import check_wav
from bimer_tf.errors import InputError

SMALL = dict(num_speakers=8, per_class=1)
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    demo.generate_demo_corpus(out, seed=0, progress=False, **SMALL)
    return out


def _corpus_bytes(out: Path) -> dict[str, bytes]:
    files = [out / "manifest.jsonl", *sorted((out / "wav").glob("*/*.wav"))]
    return {str(path.relative_to(out)): path.read_bytes() for path in files}


def test_same_seed_gives_identical_files_and_another_seed_differs(small_corpus, tmp_path):
    again = demo.generate_demo_corpus(tmp_path / "again", seed=0, progress=False, **SMALL).parent
    other = demo.generate_demo_corpus(tmp_path / "other", seed=1, progress=False, **SMALL).parent

    first = _corpus_bytes(small_corpus)
    assert _corpus_bytes(again) == first
    differing = [name for name, data in _corpus_bytes(other).items() if data != first.get(name)]
    assert len(differing) == len(first)


def test_corpus_has_the_promised_classes_speakers_and_audio(small_corpus):
    rows = read_manifest(small_corpus / "manifest.jsonl")
    assert Counter(row["label"] for row in rows) == {label: 8 for label in demo.EMOTIONS}
    assert len({row["speaker"] for row in rows}) == 8
    assert {row["corpus"] for row in rows} == {"demo"}
    info = json.loads((small_corpus / "demo_info.json").read_text())
    assert Counter(s["pitch"] for s in info["speakers"]) == {"low": 4, "high": 4}
    assert info["complete"] and info["parameters"]["version"] == demo.DEMO_VERSION
    for row in rows:
        assert Path(row["audio"]) == small_corpus / "wav" / row["speaker"] / f"{row['id']}.wav"
        wav = check_wav(row["audio"])
        assert demo.MIN_DURATION_S <= wav.duration_s <= demo.MAX_DURATION_S
        assert row["text"]


def test_default_sentences_are_often_shared_between_emotions():
    plans = demo.plan_utterances()
    rows = [{"label": p.label, "text": p.text} for p in plans]
    assert len(plans) == 480
    assert Counter(p.label for p in plans) == {label: 120 for label in demo.EMOTIONS}
    assert demo.shared_sentence_fraction(rows) >= 0.30
    # Emotion-specific sentences never cross emotions: they are the text's signal.
    for row in rows:
        for label, sentences in demo.EMOTION_SENTENCES.items():
            if row["text"] in sentences:
                assert row["label"] == label
    assert [p.text for p in demo.plan_utterances(seed=1)] != [p.text for p in plans]


def test_split_holds_out_whole_speakers(small_corpus):
    rows = read_manifest(small_corpus / "manifest.jsonl")
    protocol, folds = read_splits(small_corpus / "splits.json")
    assert protocol == "speaker-holdout" and len(folds) == 1
    fold = folds[0]
    speaker_of = {row["id"]: row["speaker"] for row in rows}
    info = json.loads((small_corpus / "demo_info.json").read_text())
    pitch_of = {s["name"]: s["pitch"] for s in info["speakers"]}
    speakers = {split: {speaker_of[i] for i in getattr(fold, split)} for split in SPLITS}

    assert sorted(fold.train + fold.val + fold.test) == sorted(speaker_of)
    # Disjoint speaker sets that together hold every speaker.
    assert sum(len(s) for s in speakers.values()) == len(set.union(*speakers.values())) == 8
    for split in ("val", "test"):
        assert sorted(pitch_of[s] for s in speakers[split]) == ["high", "low"]
    assert len(read_manifest(small_corpus / fold.name / "test.jsonl")) == len(fold.test)


def test_cache_hit_keeps_files_and_parameter_change_regenerates(tmp_path):
    manifest = demo.ensure_demo_corpus(tmp_path, num_speakers=8, per_class=1, progress=False)
    wav = next((tmp_path / "wav" / "spk08").glob("*.wav"))
    stamps = (manifest.stat().st_mtime_ns, wav.stat().st_mtime_ns)

    again = demo.ensure_demo_corpus(tmp_path, num_speakers=8, per_class=1, progress=False)
    assert again == manifest
    assert (manifest.stat().st_mtime_ns, wav.stat().st_mtime_ns) == stamps

    demo.ensure_demo_corpus(tmp_path, num_speakers=6, per_class=2, progress=False)
    rows = read_manifest(manifest)
    assert len(rows) == 6 * 2 * 4
    assert not wav.exists()  # files of the old speakers are gone
    assert json.loads((tmp_path / "demo_info.json").read_text())["parameters"]["per_class"] == 2


def test_interrupted_generation_is_redone(tmp_path):
    manifest = demo.ensure_demo_corpus(tmp_path, num_speakers=6, per_class=1, progress=False)
    info_path = tmp_path / "demo_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({"parameters": info["parameters"], "complete": False}))
    manifest.unlink()

    assert demo.ensure_demo_corpus(tmp_path, num_speakers=6, per_class=1, progress=False).is_file()
    assert json.loads(info_path.read_text())["complete"]


def test_refuses_to_overwrite_a_foreign_manifest(tmp_path):
    (tmp_path / "manifest.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match="not a demo corpus"):
        demo.generate_demo_corpus(tmp_path, progress=False, **SMALL)


def _trimmed(samples):
    import librosa

    return librosa.effects.trim(samples, top_db=30)[0]


def test_prosody_follows_the_emotion():
    import librosa

    speaker = demo.make_speakers(6, seed=0)[0]
    text = "Why does this always happen to me?"
    stats = {}
    for emotion in ("angry", "sad"):
        f0, rms, seconds = [], [], []
        for index in range(5):
            rng = np.random.default_rng([0, demo.UTTERANCE_STREAM, index])
            speech = _trimmed(demo.synthesize_utterance(text, emotion, speaker, rng))
            f0.append(np.median(librosa.yin(speech, fmin=60, fmax=500, sr=16000)))
            rms.append(np.sqrt(np.mean(speech**2)))
            seconds.append(len(speech) / 16000)
        stats[emotion] = {"f0": np.median(f0), "rms": np.median(rms), "seconds": np.median(seconds)}

    assert stats["angry"]["f0"] > 1.2 * stats["sad"]["f0"]
    assert stats["angry"]["rms"] > 2.0 * stats["sad"]["rms"]  # > 6 dB louder
    assert stats["sad"]["seconds"] > 1.2 * stats["angry"]["seconds"]  # same words, slower


def test_high_pitched_speakers_speak_higher():
    import librosa

    low, high = demo.make_speakers(6, seed=0)[:2]
    f0 = {}
    for speaker in (low, high):
        rng = np.random.default_rng([0, demo.UTTERANCE_STREAM, 0])
        text = "The meeting starts at ten."
        speech = _trimmed(demo.synthesize_utterance(text, "neutral", speaker, rng))
        f0[speaker.pitch] = np.median(librosa.yin(speech, fmin=60, fmax=500, sr=16000))
    assert f0["high"] > 1.4 * f0["low"]


def test_syllables_follow_the_spelling():
    syllables = demo.parse_syllables("Okay, the house is ready!")
    assert [s.vowel for s in syllables][:2] == ["aa", "eh"]
    assert len(syllables) == 7  # o-kay the house is rea-dy
    assert [s.pause_after for s in syllables] == [False, True, False, False, False, False, True]
    assert syllables[3].onset == "aspirate"


def test_cli_writes_corpus_and_reports(tmp_path, capsys):
    assert run_main(demo_main, ["--out", str(tmp_path), "--speakers", "6", "--per-class", "1"]) == 0
    assert "24 utterances, 6 speakers" in capsys.readouterr().out
    assert (tmp_path / "heldout-speakers" / "train.jsonl").is_file()


def test_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "bimer_tf.data.demo", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: python -m bimer_tf.data.demo")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--speakers", "1"], "at least 6 speakers"),
        (["--per-class", "0"], "at least 1"),
        (["--labels", "neutral,bored"], "demo labels"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, message):
    assert run_main(demo_main, ["--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "manifest.jsonl").exists()

"""Emotion over time: `python -m bimer_tf.timeline` and `bimer_tf.inference.timeline`.

The recordings come from `benchmarks/timeline_recordings.py`: six espeak-ng
sentences with their pauses (about 35 s; the tests that need it skip when
espeak-ng is not installed), and four real RAVDESS clips where
../shared/corpora is there. Exports: the session's bimodal `tiny_export`
(it hears 1 s, so every sentence is a long segment), and a speech-only and a
text-only tiny export trained here for one epoch (the speech one hears 3 s).
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, TINY_LABELS, tiny_overrides

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from timeline_recordings import (  # noqa: E402
    SAMPLE_RATE,
    espeak_available,
    espeak_clips,
    join_clips,
    match,
    ravdess_clips,
    RAVDESS,
)

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.errors import InputError  # noqa: E402
from bimer_tf.inference.timeline import emotion_timeline  # noqa: E402
from bimer_tf.inference.timeline.command import main  # noqa: E402
from bimer_tf.inference.timeline.segments import (  # noqa: E402
    Segment,
    fixed_windows,
    merge_short,
    model_windows,
    owned_seconds,
)
from bimer_tf.inference.timeline.transcripts import align  # noqa: E402

SEGMENT_KEYS = {"index", "start_s", "end_s", "transcript", "label", "probabilities", "windows"}
SUMMARY_KEYS = {
    "audio", "model", "duration_s", "segmentation", "segment_count", "speech_s", "dominant", "emotions",
    "mean_probabilities", "merged", "dropped", "timings_s", "files",
}


# --- fixtures -------------------------------------------------------------


def _train_and_export(name, overrides, tiny_corpus, preset, tmp_path_factory):
    from bimer_tf.config import load_config
    from bimer_tf.serving import export_run
    from bimer_tf.training import train

    config = load_config(model=name, overrides=tiny_overrides(tiny_corpus, preset) + overrides + ["trainer.epochs=1"])
    run = train(config, tmp_path_factory.mktemp("timeline_runs") / name)
    return export_run(run, tmp_path_factory.mktemp("timeline_export") / name)


@pytest.fixture(scope="session")
def speech_export(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    """A tiny speech-only (SER) export that hears 3 s."""
    return _train_and_export("ser_resnet_crnn_at", ["audio.max_duration_s=3.0"], tiny_corpus, tiny_bert_preset, tmp_path_factory)


@pytest.fixture(scope="session")
def text_export(tiny_corpus, tiny_bert_preset, tmp_path_factory):
    """A tiny text-only (TER) export."""
    return _train_and_export("ter_bert", [], tiny_corpus, tiny_bert_preset, tmp_path_factory)


@pytest.fixture(scope="module")
def recognizer_of():
    from bimer_tf.inference.recognizer import Recognizer

    loaded = {}

    def load(path):
        if str(path) not in loaded:
            loaded[str(path)] = Recognizer.from_saved_model(path)
        return loaded[str(path)]

    return load


@pytest.fixture(scope="module")
def spoken():
    """(samples, truth spans, clips): six espeak-ng sentences, about 35 s."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (CI installs it)")
    clips = espeak_clips(6, seed=0)
    samples, truth = join_clips(clips)
    return samples, truth, clips


@pytest.fixture(scope="module")
def spoken_wav(spoken, tmp_path_factory):
    import soundfile

    path = tmp_path_factory.mktemp("spoken") / "spoken.wav"
    soundfile.write(path, spoken[0], SAMPLE_RATE, subtype="PCM_16")
    return path


def probabilities_of(prediction, labels) -> np.ndarray:
    return np.array([prediction.probabilities[label] for label in labels])


def boundary_errors(truth, segments) -> list[float]:
    found = [(s.start_s, s.end_s) for s in segments]
    errors = []
    for (start, end), index in zip(truth, match(truth, found)):
        assert index is not None, f"no segment for the speech at {start:.2f}-{end:.2f} s; found {found}"
        errors.append(max(abs(found[index][0] - start), abs(found[index][1] - end)))
    return errors


# --- the rules, alone -------------------------------------------------------


@pytest.mark.parametrize("length", [0.5, 3.0, 3.01, 7.5, 20.0])
def test_long_segments_get_overlapping_windows_that_cover_them(length):
    windows = model_windows(10.0, 10.0 + length, 3.0)
    if length <= 3.0:
        assert windows == [(10.0, 10.0 + length)]
        return
    assert windows[0][0] == 10.0 and windows[-1][1] == pytest.approx(10.0 + length)
    assert all(b - a == pytest.approx(3.0) for a, b in windows)
    hops = np.diff([a for a, _ in windows])
    assert np.all(hops <= 1.5 + 1e-9) and np.allclose(hops, hops[0])
    assert len(windows) == int(np.ceil((length - 3.0) / 1.5)) + 1  # the fewest that keep the hop


def test_short_segments_join_the_nearer_neighbour_or_are_dropped_with_a_reason():
    segments = [
        Segment(0.0, 2.0, "one"),
        Segment(2.3, 2.7, "short near"),  # 0.3 s after "one", 3.3 s before "two": joins "one"
        Segment(6.0, 8.0, "two"),
        Segment(12.0, 12.4, "lonely"),  # nothing within 1 s: dropped
        Segment(14.0, 14.3, "a"),  # short, joins the short one after it ...
        Segment(14.5, 14.9, "b"),  # ... and the pair (0.9 s) is still short: joins "three"
        Segment(15.5, 17.0, "three"),
    ]
    kept, merges, dropped = merge_short(segments, min_s=1.0, max_gap_s=1.0)
    assert [(s.start_s, s.end_s, s.transcript) for s in kept] == [
        (0.0, 2.7, "one short near"),
        (6.0, 8.0, "two"),
        (14.0, 17.0, "a b three"),
    ]
    assert [(m.start_s, m.end_s) for m in merges] == [(2.3, 2.7), (14.0, 14.3), (14.0, 14.9)]
    assert len(dropped) == 1 and (dropped[0].start_s, dropped[0].end_s) == (12.0, 12.4)
    assert "shorter than the minimum 1 s" in dropped[0].reason and "within 1 s" in dropped[0].reason


def test_fixed_windows_and_each_instant_counted_once():
    windows = fixed_windows(10.0, 4.0, 3.0)
    assert [(w.start_s, w.end_s) for w in windows] == [(0, 4), (3, 7), (6, 10)]
    assert sum(owned_seconds(windows)) == pytest.approx(10.0)
    assert owned_seconds([Segment(0, 2), Segment(5, 6)]) == [2, 1]


def test_sentences_go_to_their_utterances_in_order_even_when_whisper_times_drift():
    regions = [(1.0, 3.0), (5.0, 7.0), (9.0, 11.0)]
    # The third sentence is timed 1.5 s early, in the pause after the second utterance.
    assert align([1.1, 5.2, 7.5], regions) == [0, 1, 2]
    # Timed inside the second utterance, it stays there unless that is 2 s (EMPTY_REGION_COST) off.
    assert align([1.1, 5.2, 6.5], regions) == [0, 1, 1]
    # Two sentences said without a pause share their utterance; the cough region stays empty.
    assert align([1.1, 2.0, 9.2], regions) == [0, 0, 2]
    # A sentence whose words took no time (None) fills the gap.
    assert align([1.1, None, 9.1], regions) == [0, 1, 2]


# --- whole recordings -------------------------------------------------------


def test_asr_mode_with_a_bimodal_export_writes_every_file(tiny_export, spoken, spoken_wav, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_main(main, ["--saved-model", str(tiny_export), "--audio", str(spoken_wav), "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dominant emotion:" in printed and f"files in {out}/" in printed

    rows = [json.loads(line) for line in (out / "segments.jsonl").read_text().splitlines()]
    samples, truth, clips = spoken
    assert len(rows) == len(clips)
    for row in rows:
        assert set(row) == SEGMENT_KEYS
        assert list(row["probabilities"]) == TINY_LABELS
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        assert row["transcript"].strip()
        # The tiny export hears 1 s: every sentence is scored on overlapping windows.
        assert row["windows"] == len(model_windows(row["start_s"], row["end_s"], 1.0)) > 1
    segments = [Segment(r["start_s"], r["end_s"]) for r in rows]
    assert max(boundary_errors(truth, segments)) <= 0.5

    with open(out / "segments.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["index", "start_s", "end_s", "label", "transcript", "windows"] + [f"p_{l}" for l in TINY_LABELS]
    assert [(float(t["start_s"]), t["label"], float(t["p_sad"])) for t in table] == [
        (r["start_s"], r["label"], r["probabilities"]["sad"]) for r in rows
    ]

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["segment_count"] == len(rows) and summary["segmentation"]["mode"] == "asr"
    assert summary["segmentation"]["asr"] == "whisper-tiny-offline"
    assert list(summary["emotions"]) == TINY_LABELS
    assert sum(e["share"] for e in summary["emotions"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["dominant"] == max(summary["emotions"], key=lambda l: summary["emotions"][l]["seconds"])
    assert {"decode", "vad", "asr", "model_load", "model", "write", "total"} <= set(summary["timings_s"])

    from PIL import Image

    with Image.open(out / "timeline.png") as image:
        image.load()
        assert image.width >= 1200 and image.height >= 500
        assert len(set(image.convert("RGB").getdata())) > 50  # drawn, not blank


def test_vad_mode_finds_each_sentence_and_scores_it_in_batches(speech_export, spoken, recognizer_of):
    recognizer = recognizer_of(speech_export)
    samples, truth, clips = spoken
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE, batch_size=4)
    assert timeline.plan.segment == "vad" and timeline.plan.asr == "none"
    assert len(timeline.segments) == len(clips) and not timeline.dropped
    assert max(boundary_errors(truth, [s.segment for s in timeline.segments])) <= 0.3
    for scored in timeline.segments:
        assert scored.segment.transcript is None and scored.windows == 1
        first, last = (int(round(t * SAMPLE_RATE)) for t in (scored.segment.start_s, scored.segment.end_s))
        alone = recognizer.predict(audio=samples[first:last], sample_rate=SAMPLE_RATE)
        np.testing.assert_allclose(scored.probabilities, probabilities_of(alone, recognizer.labels), atol=1e-5)


def test_a_long_segment_is_the_mean_of_its_windows(speech_export, spoken, recognizer_of):
    recognizer = recognizer_of(speech_export)
    samples = spoken[0][: 14 * SAMPLE_RATE]
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE, segment="fixed", window_s=7.0)
    for scored in timeline.segments:
        windows = model_windows(scored.segment.start_s, scored.segment.end_s, 3.0)
        assert scored.windows == len(windows) >= 3
        expected = np.mean(
            [
                probabilities_of(
                    recognizer.predict(audio=samples[int(round(a * SAMPLE_RATE)) : int(round(b * SAMPLE_RATE))],
                                       sample_rate=SAMPLE_RATE),
                    recognizer.labels,
                )
                for a, b in windows
            ],
            axis=0,
        )
        np.testing.assert_allclose(scored.probabilities, expected, atol=1e-5)


def test_fixed_windows_over_silence_are_dropped_with_the_reason(speech_export, spoken, recognizer_of):
    recognizer = recognizer_of(speech_export)
    clip = spoken[2][0]  # its pauses are faint noise, below the model's silence floor
    samples = np.concatenate([clip.samples, np.zeros(6 * SAMPLE_RATE, np.float32), clip.samples])
    second = clip.samples.size + 6 * SAMPLE_RATE
    speech = [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in (clip.speech, (second + clip.speech[0], second + clip.speech[1]))]
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE, segment="fixed", window_s=2.0, hop_s=1.0)
    silent = [d for d in timeline.dropped if "silent" in d.reason]
    assert len(silent) >= 5, timeline.dropped
    assert not any(min(b, d.end_s) - max(a, d.start_s) > 0.05 for d in silent for a, b in speech)
    assert all(any(min(b, s.segment.end_s) > max(a, s.segment.start_s) for a, b in speech) for s in timeline.segments)
    summary = timeline.summary()
    assert summary["speech_s"] <= samples.size / SAMPLE_RATE + 1e-6  # overlapping windows counted once
    assert summary["segmentation"] == {
        "mode": "fixed", "asr": "none", "min_segment_s": 1.0, "merge_gap_s": 1.0, "window_s": 2.0, "hop_s": 1.0,
    }


def test_a_short_word_joins_its_sentence_and_a_lone_one_is_dropped(speech_export, spoken, recognizer_of, tmp_path):
    recognizer = recognizer_of(speech_export)
    word = espeak_clips(1, seed=3)[0]
    short = word.samples[word.speech[0] : word.speech[1]]
    short = short[: int(0.6 * SAMPLE_RATE)]
    sentence = spoken[2][0]
    pause = lambda s: np.zeros(int(s * SAMPLE_RATE), np.float32)  # noqa: E731
    samples = np.concatenate(
        [pause(0.5), sentence.samples[sentence.speech[0] : sentence.speech[1]], pause(0.7), short, pause(5.0), short, pause(1.0)]
    )
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE, output=tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["segment_count"] == 1
    assert len(summary["merged"]) == 1 and summary["merged"][0]["reason"] == "shorter than the minimum"
    assert len(summary["dropped"]) == 1 and "shorter than the minimum" in summary["dropped"][0]["reason"]
    assert summary["dropped"][0]["start_s"] > timeline.segments[0].segment.end_s + 4.0


def test_text_export_gets_whisper_words_and_needs_asr(text_export, spoken, recognizer_of):
    recognizer = recognizer_of(text_export)
    samples, truth, clips = spoken
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE)
    assert timeline.plan.segment == "asr" and len(timeline.segments) == len(clips)
    assert max(boundary_errors(truth, [s.segment for s in timeline.segments])) <= 0.5
    for scored in timeline.segments:
        alone = recognizer.predict(text=scored.segment.transcript)
        np.testing.assert_allclose(scored.probabilities, probabilities_of(alone, recognizer.labels), atol=1e-5)
    with pytest.raises(InputError, match="--asr none"):
        emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE, asr="none")


def test_bimodal_export_with_asr_none_and_other_bad_input_exit_2(tiny_export, spoken_wav, tmp_path, capsys):
    def run(*argv):
        return run_main(main, ["--saved-model", str(tiny_export), "--output", str(tmp_path / "out"), *argv])

    assert run("--audio", str(spoken_wav), "--asr", "none") == 2
    assert "--asr none leaves no transcript" in capsys.readouterr().err
    assert run("--audio", str(tmp_path / "missing.wav")) == 2
    assert "audio file not found" in capsys.readouterr().err
    (tmp_path / "noise.mp3").write_bytes(b"not audio at all" * 100)
    assert run("--audio", str(tmp_path / "noise.mp3")) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert run("--audio", str(spoken_wav), "--segment", "vad", "--window-s", "3") == 2
    assert "options of --segment fixed" in capsys.readouterr().err
    code = run_main(main, ["--saved-model", str(tmp_path), "--audio", str(spoken_wav), "--output", str(tmp_path / "o")])
    assert code == 2 and "not a SavedModel version folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_mp3_and_stereo_44k_recordings_give_the_same_segments(speech_export, spoken, recognizer_of, tmp_path):
    import soundfile
    import soxr

    recognizer = recognizer_of(speech_export)
    samples = spoken[0]
    reference = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE).segments
    reference = [(s.segment.start_s, s.segment.end_s) for s in reference]
    wide = soxr.resample(samples, SAMPLE_RATE, 44100)
    stereo = np.stack([wide, 0.5 * wide], axis=1)
    soundfile.write(tmp_path / "stereo.wav", stereo, 44100, subtype="PCM_16")
    soundfile.write(tmp_path / "speech.mp3", samples, SAMPLE_RATE, format="MP3")
    for name in ("stereo.wav", "speech.mp3"):
        found = [(s.segment.start_s, s.segment.end_s) for s in recognizer.timeline(tmp_path / name).segments]
        assert len(found) == len(reference), name
        # MP3's encoder delay is about 0.07 s; resampling and mixing move edges by milliseconds.
        assert np.max(np.abs(np.array(found) - np.array(reference))) <= 0.1, name


def test_each_clip_scores_as_it_does_alone(speech_export, recognizer_of):
    """Four real RAVDESS clips end to end (espeak-ng sentences without ../shared/corpora): each
    is one segment within 0.3 s of its speech, and scored as `Recognizer.predict` scores the
    clip alone, within what the model itself moves when the clip starts 2.5-15 ms later (the
    timeline's edges are within the 16 ms hop of its trim rule), plus 0.02."""
    if (RAVDESS / "metadata.csv").is_file():
        clips = ravdess_clips(4, seed=0, max_s=2.9)
    elif espeak_available():
        clips = espeak_clips(4, seed=1)
    else:
        pytest.skip("neither ../shared/corpora/ravdess4 nor espeak-ng is available")
    recognizer = recognizer_of(speech_export)
    samples, truth = join_clips(clips)
    timeline = emotion_timeline(recognizer, samples, sample_rate=SAMPLE_RATE)
    assert len(timeline.segments) == len(clips)
    assert max(boundary_errors(truth, [s.segment for s in timeline.segments])) <= 0.3
    for clip, scored in zip(clips, timeline.segments):
        alone = probabilities_of(recognizer.predict(audio=clip.samples, sample_rate=SAMPLE_RATE), recognizer.labels)
        band = max(
            np.max(np.abs(probabilities_of(
                recognizer.predict(audio=np.concatenate([clip.samples[:k], clip.samples]), sample_rate=SAMPLE_RATE),
                recognizer.labels) - alone))
            for k in (40, 80, 120, 160, 200, 240)
        )
        tolerance = band + 0.02
        assert np.max(np.abs(scored.probabilities - alone)) <= tolerance, clip.origin
        top = np.sort(alone)[::-1]
        if top[0] - top[1] > 2 * tolerance:  # not a near tie
            assert scored.label == recognizer.labels[int(np.argmax(alone))], clip.origin

"""Voice activity detection (`bimer_tf.audio.vad`) and Whisper's parts (`bimer_tf.audio.asr.speech_spans`)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, synth_tone

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from timeline_recordings import SAMPLE_RATE, espeak_available, espeak_clips, join_clips, match  # noqa: E402

from bimer_tf.audio.asr import speech_spans  # noqa: E402
from bimer_tf.audio.vad import VadSettings, speech_regions  # noqa: E402
from bimer_tf.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def sentences():
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (CI installs it)")
    clips = espeak_clips(5, seed=2)
    return join_clips(clips)


def test_each_sentence_is_one_region_near_its_speech(sentences):
    samples, truth = sentences
    regions = speech_regions(samples)
    assert len(regions) == len(truth)
    for (start, end), index in zip(truth, match(truth, regions)):
        assert index is not None
        found = regions[index]
        # Silero's frames are 32 ms and each region is padded by 0.1 s.
        assert abs(found[0] - start) <= 0.3 and abs(found[1] - end) <= 0.3, (found, (start, end))


def test_long_recordings_are_read_in_blocks_and_joined_again(sentences):
    samples, _ = sentences
    whole = speech_regions(samples)
    # Blocks of 6 s (the block is at least twice the longest region, so use a short max region).
    blocked = speech_regions(samples, settings=VadSettings(max_region_s=3.0), block_s=6.0)
    reference = speech_regions(samples, settings=VadSettings(max_region_s=3.0))
    assert len(blocked) == len(reference)
    assert np.max(np.abs(np.array(blocked) - np.array(reference))) <= 0.1
    assert len(whole) <= len(reference)


def test_silence_and_a_steady_tone_hold_no_speech():
    assert speech_regions(np.zeros(5 * SAMPLE_RATE, np.float32)) == []
    assert speech_regions(synth_tone(4.0, freq=440.0)) == []


def test_a_longer_pause_is_needed_to_end_a_region(sentences):
    samples, truth = sentences
    # Joined by 0.4 s pauses, the first two sentences are one region at min_silence_s 0.5 ...
    first = samples[int((truth[0][0] - 0.2) * SAMPLE_RATE) : int(truth[0][1] * SAMPLE_RATE)]
    second = samples[int(truth[1][0] * SAMPLE_RATE) : int((truth[1][1] + 0.2) * SAMPLE_RATE)]
    joined = np.concatenate([first, np.zeros(int(0.4 * SAMPLE_RATE), np.float32), second])
    assert len(speech_regions(joined)) == 1
    # ... and two at 0.25.
    assert len(speech_regions(joined, settings=VadSettings(min_silence_s=0.25))) == 2


def test_the_vad_hears_16_khz_mono_only():
    with pytest.raises(InputError, match="16000 Hz"):
        speech_regions(np.zeros(8000, np.float32), sample_rate=8000)
    with pytest.raises(InputError, match="mono"):
        speech_regions(np.zeros((8000, 2), np.float32))


def test_speech_spans_group_regions_into_whisper_windows():
    regions = [(0.5, 3.0), (4.0, 12.0), (13.0, 29.0), (31.0, 33.0), (34.0, 70.0), (71.0, 72.0)]
    assert speech_spans(regions, 30.0) == [(0.5, 29.0), (31.0, 33.0), (34.0, 70.0), (71.0, 72.0)]
    assert speech_spans(regions, 15.0) == [(0.5, 12.0), (13.0, 29.0), (31.0, 33.0), (34.0, 70.0), (71.0, 72.0)]
    assert speech_spans([], 30.0) == []

"""Synthetic speakers and the source-filter synthesizer that gives them a voice.

Speech carries *arousal*. Angry and happy speech is high, wide-ranged, fast,
loud and bright; sad speech is low, flat, slow, quiet, dark and breathy;
neutral sits in between. Subtler cues separate the pairs: angry accents peak
early and fall with sharp attacks and a tense, bright voice; happy accents
rise, vary more and end high with slightly raised (smiling) formants.
Speaker and per-utterance randomness make speech informative, not perfect.

An utterance is Rosenberg glottal pulses with an F0 contour, jitter and
shimmer, through a cascade of formant resonators, with noise bursts for
consonants; its text only decides the syllables (a rough reading of the
spelling), never the emotion.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields

import numpy as np
from scipy import signal

from bimer_tf.errors import InputError

EMOTIONS = ("neutral", "angry", "sad", "happy")
MIN_DURATION_S, MAX_DURATION_S = 1.5, 5.0
# Independent random streams: [seed, stream, index]. The speakers draw from
# the first; the corpus draws its texts and utterances from the others.
SPEAKER_STREAM, TEXT_STREAM, UTTERANCE_STREAM = 0, 1, 2

# ============================================================================
# Voices and prosody
# ============================================================================


@dataclass(frozen=True)
class SpeakerVoice:
    """One synthetic speaker: pitch, vocal tract and voice quality."""

    name: str
    pitch: str  # "low" (male-like) or "high" (female-like)
    f0_hz: float  # F0 of calm speech
    f0_range: float  # scales the emotion's pitch excursions
    tract_scale: float  # formant scale from vocal-tract length (1.0: adult male)
    breathiness: float  # aspiration noise added to the emotion's
    lowpass: float  # added to the emotion's spectral tilt
    rate: float  # scales the emotion's syllable rate
    level_db: float  # recording level offset


@dataclass(frozen=True)
class EmotionProsody:
    """How an emotion shapes the voice (means; utterances scatter around them)."""

    f0_scale: float  # F0 level relative to the speaker's calm F0
    accent_st: float  # height of pitch accents, semitones
    accent_position: float  # accent peak within the vowel: 0 early (falling) .. 1 late (rising)
    accent_rate: float  # share of syllables that carry an accent
    slope_st: float  # F0 drift over the utterance (declination < 0)
    final_st: float  # final rise (> 0) or fall (< 0)
    wobble_st: float  # slow random F0 variation
    syllable_rate: float  # syllables per second
    level_db: float  # speech RMS, dBFS
    lowpass: float  # one-pole low-pass coefficient: 0 bright .. 0.8 dark
    open_quotient: float  # glottal open phase: larger is softer and darker
    breath: float  # aspiration noise relative to voicing
    jitter: float  # period-to-period F0 perturbation
    shimmer: float  # period-to-period amplitude perturbation
    attack_s: float  # syllable onset rise time
    formant_scale: float  # lip spreading of a smile raises formants


EMOTION_PROSODY = {
    "neutral": EmotionProsody(
        f0_scale=1.0, accent_st=2.0, accent_position=0.5, accent_rate=0.3, slope_st=-2.0,
        final_st=-1.0, wobble_st=0.3, syllable_rate=4.6, level_db=-26.0, lowpass=0.35,
        open_quotient=0.6, breath=0.04, jitter=0.005, shimmer=0.04, attack_s=0.030,
        formant_scale=1.0,
    ),
    "angry": EmotionProsody(
        f0_scale=1.4, accent_st=5.0, accent_position=0.15, accent_rate=0.5, slope_st=-3.5,
        final_st=-3.0, wobble_st=0.5, syllable_rate=5.6, level_db=-19.0, lowpass=0.05,
        open_quotient=0.42, breath=0.02, jitter=0.010, shimmer=0.08, attack_s=0.008,
        formant_scale=1.02,
    ),
    "sad": EmotionProsody(
        f0_scale=0.88, accent_st=1.2, accent_position=0.5, accent_rate=0.2, slope_st=-1.0,
        final_st=-1.5, wobble_st=0.2, syllable_rate=3.4, level_db=-32.0, lowpass=0.6,
        open_quotient=0.72, breath=0.15, jitter=0.012, shimmer=0.06, attack_s=0.060,
        formant_scale=0.98,
    ),
    "happy": EmotionProsody(
        f0_scale=1.45, accent_st=6.0, accent_position=0.85, accent_rate=0.55, slope_st=0.5,
        final_st=3.5, wobble_st=1.2, syllable_rate=5.4, level_db=-20.0, lowpass=0.15,
        open_quotient=0.55, breath=0.04, jitter=0.006, shimmer=0.05, attack_s=0.020,
        formant_scale=1.06,
    ),
}

# How strongly an utterance shows its emotion (1: the profile above).
INTENSITY_MEAN, INTENSITY_SPREAD = 0.9, 0.25

# Reference formants F1-F4 (Hz) of an adult male and their bandwidths.
VOWEL_FORMANTS = {
    "iy": (270, 2290, 3010, 3500),
    "ih": (390, 1990, 2550, 3500),
    "eh": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500),
    "aa": (730, 1090, 2440, 3500),
    "ao": (570, 840, 2410, 3500),
    "uh": (440, 1020, 2240, 3500),
    "uw": (300, 870, 2240, 3500),
    "ah": (640, 1190, 2390, 3500),
    "er": (490, 1350, 1690, 3500),
}
FORMANT_BANDWIDTHS = (70.0, 100.0, 140.0, 200.0)
NASAL_FORMANTS = (250, 1100, 2500, 3500)
# Spelling of a vowel group -> vowel (a diphthong by its first target); else
# its first letter decides.
VOWEL_SPELLINGS = {
    "ee": "iy", "ea": "iy", "ie": "iy", "ey": "iy", "oo": "uw", "ou": "ae", "ow": "ae",
    "oa": "ao", "ay": "eh", "ai": "eh", "er": "er", "ur": "er", "ir": "er",
}
VOWEL_BY_LETTER = {"a": "ae", "e": "eh", "i": "ih", "o": "aa", "u": "ah", "y": "iy"}


# Share of a syllable's time taken by its onset consonant.
ONSET_SHARE = {
    "": 0.0, "plosive": 0.28, "fricative": 0.3, "sibilant": 0.35, "aspirate": 0.2, "sonorant": 0.25,
}


@dataclass(frozen=True)
class Syllable:
    onset: str  # "plosive", "fricative", "sibilant", "aspirate", "sonorant" or ""
    vowel: str  # key of VOWEL_FORMANTS
    pause_after: bool  # a comma or sentence end follows


def make_speakers(num_speakers: int, seed: int = 0) -> list[SpeakerVoice]:
    """Speakers alternate low-pitched (odd numbers) and high-pitched (even numbers)."""
    speakers = []
    for index in range(num_speakers):
        rng = np.random.default_rng([seed, SPEAKER_STREAM, index])
        low = index % 2 == 0
        speakers.append(
            SpeakerVoice(
                name=f"spk{index + 1:02d}",
                pitch="low" if low else "high",
                f0_hz=float(rng.uniform(95, 135) if low else rng.uniform(185, 235)),
                f0_range=float(rng.uniform(0.8, 1.25)),
                tract_scale=float(rng.uniform(0.95, 1.05) if low else rng.uniform(1.12, 1.22)),
                breathiness=float(rng.uniform(0.0, 0.08) if low else rng.uniform(0.03, 0.12)),
                lowpass=float(rng.uniform(-0.05, 0.15)),
                rate=float(rng.uniform(0.88, 1.12)),
                level_db=float(rng.uniform(-2.0, 2.0)),
            )
        )
    return speakers


def parse_syllables(text: str) -> list[Syllable]:
    """Rough syllables of English text: one per vowel group, onset from the letters before."""
    syllables = []
    for token in re.findall(r"[a-z']+|[,.!?;]", text.lower()):
        if not token[0].isalpha():
            if syllables:
                syllables[-1] = Syllable(syllables[-1].onset, syllables[-1].vowel, True)
            continue
        word = token.replace("'", "")
        # A y before a vowel is a consonant (yes, you); a final lone e is silent.
        groups = list(re.finditer(r"[aeiou]+[ry]?|y(?![aeiou])", word))
        if len(groups) > 1 and groups[-1].group() == "e" and groups[-1].end() == len(word):
            groups = groups[:-1]
        start = 0
        for group in groups or [re.match(r".", word)]:
            onset = word[start : group.start()]
            start = group.end()
            spelling = group.group()
            vowel = VOWEL_SPELLINGS.get(spelling[:2], VOWEL_BY_LETTER.get(spelling[0], "ah"))
            syllables.append(Syllable(_onset_kind(onset), vowel, False))
    return syllables


def _onset_kind(letters: str) -> str:
    if not letters:
        return ""
    if letters.endswith(("sh", "ch", "th")) or letters[-1] in "fvj":
        return "fricative"
    if letters[-1] in "szxc":
        return "sibilant"
    if letters[-1] in "ptkbdgq":
        return "plosive"
    if letters[-1] == "h":
        return "aspirate"
    return "sonorant"


# ============================================================================
# Synthesis
# ============================================================================


def _blend(calm: EmotionProsody, style: EmotionProsody, intensity: float) -> EmotionProsody:
    """`calm` moved toward `style` by `intensity` (0: calm, 1: style, > 1: exaggerated)."""
    values = {
        f.name: getattr(calm, f.name) + intensity * (getattr(style, f.name) - getattr(calm, f.name))
        for f in fields(EmotionProsody)
    }
    return EmotionProsody(**values)


def _rosenberg_pulses(phase: np.ndarray, open_quotient: float, speed_quotient: float) -> np.ndarray:
    """Glottal flow of Rosenberg's model at each sample's position in its period."""
    position = phase % 1.0
    opening = open_quotient * speed_quotient / (1.0 + speed_quotient)
    closing = open_quotient - opening
    flow = np.zeros_like(position)
    rising = position < opening
    flow[rising] = 0.5 * (1.0 - np.cos(np.pi * position[rising] / opening))
    falling = (position >= opening) & (position < open_quotient)
    flow[falling] = np.cos(0.5 * np.pi * (position[falling] - opening) / closing)
    return flow


def _resonator_cascade(formants, bandwidths, sample_rate: int) -> np.ndarray:
    """Second-order sections of a cascade of unity-DC-gain resonators."""
    nyquist = 0.5 * sample_rate
    sections = []
    for frequency, bandwidth in zip(formants, bandwidths):
        if frequency >= 0.95 * nyquist:
            continue
        radius = np.exp(-np.pi * bandwidth / sample_rate)
        a1 = -2.0 * radius * np.cos(2.0 * np.pi * frequency / sample_rate)
        a2 = radius**2
        sections.append([1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.array(sections)


@functools.lru_cache(maxsize=None)
def _noise_band(kind: str, sample_rate: int) -> np.ndarray:
    """Band-pass filter of a consonant's noise."""
    bands = {
        "sibilant": (3500.0, 7500.0),
        "fricative": (1200.0, 7000.0),
        "plosive": (800.0, 6500.0),
        "aspirate": (500.0, 5000.0),
    }
    low, high = bands[kind]
    high = min(high, 0.45 * sample_rate)
    return signal.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")


def _ramp_envelope(length: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack, flat middle, raised-cosine release."""
    envelope = np.ones(length)
    attack = min(attack, length // 2)
    release = min(release, length - attack)
    if attack > 0:
        envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    if release > 0:
        envelope[length - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    return envelope


def _smooth_noise(rng: np.random.Generator, length: int, pole: float) -> np.ndarray:
    """Slowly varying noise with unit standard deviation."""
    noise = signal.lfilter([1.0], [1.0, -pole], rng.standard_normal(length))
    return noise / (noise.std() + 1e-9)


def synthesize_utterance(
    text: str,
    emotion: str,
    speaker: SpeakerVoice,
    rng: np.random.Generator,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speech for `text` spoken by `speaker` in `emotion`, as float32 samples.

    Leading and trailing silence (with low background noise) surround the
    speech; the total lasts between MIN_DURATION_S and MAX_DURATION_S.
    """
    if emotion not in EMOTION_PROSODY:
        raise InputError(f"unknown emotion '{emotion}'; the demo voices know {', '.join(EMOTIONS)}")
    # Utterances vary in how strongly they show the emotion: a mild one drifts
    # toward neutral speech, as in acted corpora.
    intensity = float(np.clip(rng.normal(INTENSITY_MEAN, INTENSITY_SPREAD), 0.15, 1.4))
    style = _blend(EMOTION_PROSODY["neutral"], EMOTION_PROSODY[emotion], intensity)
    syllables = parse_syllables(text) or [Syllable("", "ah", True)]

    # --- Per-utterance prosody: the emotion's means, the speaker, chance. ---
    f0_level = speaker.f0_hz * style.f0_scale * np.exp(rng.normal(0.0, 0.07))
    accent_st = style.accent_st * speaker.f0_range * np.exp(rng.normal(0.0, 0.25))
    rate = style.syllable_rate * speaker.rate * np.exp(rng.normal(0.0, 0.10))
    level_db = style.level_db + speaker.level_db + rng.normal(0.0, 3.0)
    lowpass = float(np.clip(style.lowpass + speaker.lowpass + rng.normal(0.0, 0.08), 0.0, 0.85))
    open_quotient = float(np.clip(style.open_quotient + rng.normal(0.0, 0.05), 0.3, 0.85))
    breath = max(0.0, style.breath + speaker.breathiness + rng.normal(0.0, 0.02))
    attack_s = max(style.attack_s, 0.004) * np.exp(rng.normal(0.0, 0.3))

    # --- Timeline: onset consonant + vowel per syllable, pauses at punctuation. ---
    syllable_s = np.exp(rng.normal(0.0, 0.18, len(syllables))) / rate
    pause_s = np.array([s.pause_after for s in syllables]) * rng.uniform(0.12, 0.3, len(syllables))
    pause_s *= 4.5 / rate
    pause_s[-1] = 0.0
    lead_s, tail_s = rng.uniform(0.15, 0.45, 2)
    speech_s = syllable_s.sum() + pause_s.sum()
    longest_speech_s = MAX_DURATION_S - 0.05 - lead_s - tail_s
    if speech_s > longest_speech_s:  # a long sentence spoken slowly: hurry a little
        syllable_s *= longest_speech_s / speech_s
        pause_s *= longest_speech_s / speech_s
        speech_s = longest_speech_s
    if lead_s + speech_s + tail_s < MIN_DURATION_S + 0.05:  # a short reply: wait longer
        extra = MIN_DURATION_S + 0.05 - (lead_s + speech_s + tail_s)
        lead_s, tail_s = lead_s + extra / 2, tail_s + extra / 2
    total = int(round((lead_s + speech_s + tail_s) * sample_rate))
    starts = lead_s + np.concatenate([[0.0], np.cumsum(syllable_s + pause_s)[:-1]])

    onset_s = np.array([min(ONSET_SHARE[s.onset] * d, 0.13) for s, d in zip(syllables, syllable_s)])
    vowel_start = starts + onset_s
    vowel_s = syllable_s - onset_s

    # --- F0 contour: declination, accents, final movement, slow wobble. ---
    t = np.arange(total) / sample_rate
    progress = np.clip((t - lead_s) / speech_s, 0.0, 1.0)
    semitones = style.slope_st * progress
    final = np.clip((progress - 0.75) / 0.25, 0.0, 1.0)
    semitones += style.final_st * np.exp(rng.normal(0.0, 0.3)) * final * final * (3.0 - 2.0 * final)
    accented = rng.random(len(syllables)) < style.accent_rate
    accented[int(np.argmax(syllable_s))] = True
    for start, length, is_accented in zip(vowel_start, vowel_s, accented):
        if is_accented:
            peak = start + np.clip(style.accent_position + rng.normal(0.0, 0.1), 0.0, 1.0) * length
            width = 0.35 * length
            height = accent_st * rng.uniform(0.6, 1.0)
            semitones += height * np.exp(-0.5 * ((t - peak) / width) ** 2)
    control_step = max(1, sample_rate // 200)  # F0 wanders on a 5 ms grid
    control = np.arange(0, total + control_step, control_step)
    wobble = _smooth_noise(rng, len(control), pole=0.97) * style.wobble_st * speaker.f0_range
    semitones += np.interp(np.arange(total), control, wobble)
    jitter = np.interp(np.arange(total), control, rng.standard_normal(len(control)) * style.jitter)
    f0 = np.clip(f0_level * 2.0 ** (semitones / 12.0) * (1.0 + jitter), 55.0, 600.0)

    # --- Glottal source: Rosenberg pulses, lip radiation, shimmer, breath. ---
    phase = np.cumsum(f0) / sample_rate
    flow = _rosenberg_pulses(phase, open_quotient, speed_quotient=2.0 + 2.0 * (0.7 - open_quotient))
    voicing = np.diff(flow, prepend=0.0)
    shimmer = 1.0 + style.shimmer * rng.standard_normal(int(phase[-1]) + 2)
    voicing *= np.clip(shimmer[phase.astype(int)], 0.2, None)
    voicing /= voicing.std() + 1e-9
    aspiration = rng.standard_normal(total) * (0.3 + flow)
    source = voicing + breath * 4.0 * aspiration / (aspiration.std() + 1e-9)

    # --- Vocal tract: each syllable through its own formant cascade. ---
    speech = np.zeros(total)
    tract = speaker.tract_scale * style.formant_scale
    bandwidths = np.array(FORMANT_BANDWIDTHS) * (1.0 + 2.0 * breath)
    ring = int(0.03 * sample_rate)  # let resonances decay past the vowel's end
    stress = np.where(accented, 1.0, 10 ** (-rng.uniform(2.0, 5.0, len(syllables)) / 20))
    for syllable, start, onset, v_start, v_len, gain in zip(
        syllables, starts, onset_s, vowel_start, vowel_s, stress
    ):
        begin, length = int(v_start * sample_rate), max(int(v_len * sample_rate), 16)
        end = min(begin + length, total)
        attack, release = int(attack_s * sample_rate), int(0.4 * (end - begin))
        envelope = _ramp_envelope(end - begin, attack, release)
        formants = np.array(VOWEL_FORMANTS[syllable.vowel]) * tract
        formants *= np.exp(rng.normal(0.0, 0.04, len(formants)))  # coarticulation, sloppiness
        excitation = np.zeros(min(end - begin + ring, total - begin))
        excitation[: end - begin] = source[begin:end] * envelope * gain
        speech[begin : begin + len(excitation)] += signal.sosfilt(
            _resonator_cascade(formants, bandwidths, sample_rate), excitation
        )
        begin, length = int(start * sample_rate), int(onset * sample_rate)
        if syllable.onset and length >= 16:
            voiced = source[begin : begin + length]
            sound = _consonant(syllable.onset, voiced, tract, bandwidths, rng, sample_rate)
            speech[begin : begin + length] += gain * sound

    # --- Spectral tilt, level, silence and room noise. ---
    speech = signal.lfilter([1.0 - lowpass], [1.0, -lowpass], speech)
    spoken = slice(int(lead_s * sample_rate), int((lead_s + speech_s) * sample_rate))
    speech *= 10 ** (level_db / 20) / (np.sqrt(np.mean(speech[spoken] ** 2)) + 1e-12)
    room = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(total))
    room *= 10 ** (rng.uniform(-70.0, -62.0) / 20) / (room.std() + 1e-12)
    return (speech + room).astype(np.float32)


def _consonant(kind, voiced, tract, bandwidths, rng, sample_rate) -> np.ndarray:
    """The consonant before a vowel, as long as `voiced`: a noise burst or a nasal murmur."""
    length = len(voiced)
    if kind == "sonorant":
        murmur = voiced * _ramp_envelope(length, length // 4, length // 4)
        nasal = _resonator_cascade(np.array(NASAL_FORMANTS) * tract, bandwidths * 2.0, sample_rate)
        return 0.3 * signal.sosfilt(nasal, murmur)
    noise = signal.sosfilt(_noise_band(kind, sample_rate), rng.standard_normal(length))
    if kind == "plosive":  # closure silence, then a sharp decaying burst
        closure = length // 2
        burst = np.zeros(length)
        decay = np.exp(-np.arange(length - closure) / (0.008 * sample_rate))
        burst[closure:] = noise[closure:] * decay
        noise, level = burst, 0.35
    else:
        noise = noise * _ramp_envelope(length, length // 3, length // 3)
        level = {"sibilant": 0.5, "fricative": 0.25, "aspirate": 0.2}[kind]
    return level * noise / (noise.std() + 1e-9)

"""The demo corpus: synthetic speech + text emotion data, generated on first use.

Four emotions spoken by synthetic speakers, so the whole system (input
pipeline, training, export) runs on a laptop CPU with no download. Each
utterance pairs a sentence with speech from a source-filter synthesizer
(Rosenberg glottal pulses with an F0 contour, jitter and shimmer, through a
cascade of formant resonators, with noise bursts for consonants).

The corpus is built so that fusion matters, the way it does in real dialogue:

- Speech carries *arousal*. Angry and happy speech is high, wide-ranged, fast,
  loud and bright; sad speech is low, flat, slow, quiet, dark and breathy;
  neutral sits in between. Subtler cues separate the pairs: angry accents peak
  early and fall with sharp attacks and a tense, bright voice; happy accents
  rise, vary more and end high with slightly raised (smiling) formants.
  Speaker and per-utterance randomness make speech informative, not perfect.
- Text carries *valence*. Some sentences belong to one emotion ("I can't
  stand this anymore."), negative ones are shared by angry and sad, mild ones
  by neutral and happy, and short ambiguous ones ("Are you serious?") by all
  four, so the transcript alone cannot tell every class apart either.

Everything is deterministic for a seed: utterance `i` draws from
`np.random.default_rng([seed, UTTERANCE_STREAM, i])`, so the same seed gives
byte-identical WAVs and manifest whatever the order of work. The corpus folder
holds `wav/<speaker>/<id>.wav`, `manifest.jsonl`, a speaker-independent split
(`splits.json`, `heldout-speakers/{train,val,test}.jsonl`) and `demo_info.json`,
which `ensure_demo_corpus` reads to skip work already done.

    python -m bimer_tf.data.demo --out data/demo [--seed 0] [--speakers 10] [--per-class 12]
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm.auto import tqdm

from bimer_tf.config import AudioConfig, DataConfig
from bimer_tf.data.manifest import Fold, make_row, read_manifest, write_manifest, write_splits
from bimer_tf.data.wav import write_pcm16
from bimer_tf.errors import InputError

# Bump whenever a change alters the generated audio or text: cached corpora
# recorded with another version are regenerated.
DEMO_VERSION = 1
EMOTIONS = ("neutral", "angry", "sad", "happy")
CORPUS = "demo"
PROTOCOL = "speaker-holdout"
FOLD_NAME = "heldout-speakers"
INFO_FILE = "demo_info.json"
MANIFEST_FILE = "manifest.jsonl"
# Two held-out test speakers, two validation speakers and at least two to train on.
MIN_SPEAKERS = 6
MIN_DURATION_S, MAX_DURATION_S = 1.5, 5.0
# Independent random streams: [seed, stream, index].
SPEAKER_STREAM, TEXT_STREAM, UTTERANCE_STREAM = 0, 1, 2

# ============================================================================
# Sentence bank
# ============================================================================

# Sentences that only ever occur under one emotion.
EMOTION_SENTENCES = {
    "neutral": (
        "The meeting starts at ten.",
        "I'll take the bus to work tomorrow.",
        "The store closes at nine on Sundays.",
        "Please put the files on my desk.",
        "I need to renew my passport.",
        "The train leaves from platform four.",
        "Can you pass me the salt?",
        "I parked the car behind the building.",
        "We have a test on Thursday.",
        "The report is due next week.",
        "My sister lives in Chicago.",
        "I usually have coffee in the morning.",
        "The printer is on the second floor.",
        "Let me check my calendar.",
        "The forms are in the top drawer.",
        "I'm going to the post office.",
        "Dinner is at seven.",
        "Turn left at the next light.",
        "The package arrived this afternoon.",
        "I'll call you when I get there.",
    ),
    "angry": (
        "I can't stand this anymore.",
        "Get out of my way right now.",
        "You lied to me again!",
        "Don't you dare touch my things.",
        "I told you a hundred times to stop!",
        "This is absolutely ridiculous.",
        "Who do you think you are?",
        "Stop interrupting me!",
        "I'm sick of your excuses.",
        "You never listen to a word I say.",
        "Give me back my money.",
        "How dare you talk to me like that?",
        "I'm done covering for you.",
        "Shut the door and get out!",
        "That's the last time you humiliate me.",
        "You broke it on purpose, didn't you?",
        "Keep your hands off my car!",
        "I want to speak to your manager.",
        "Nobody treats me like this!",
        "You wasted my whole afternoon!",
    ),
    "sad": (
        "I miss her so much.",
        "Nobody came to the funeral.",
        "I just feel empty inside.",
        "He's never coming back, is he?",
        "I lost my job today.",
        "I don't have anyone to talk to.",
        "Everything reminds me of him.",
        "The dog died last night.",
        "I tried so hard and it wasn't enough.",
        "I haven't slept in days.",
        "We used to be so close.",
        "I wish I could go back.",
        "She didn't even say goodbye.",
        "I feel so alone in this house.",
        "It's been a year and it still hurts.",
        "My grandfather passed away.",
        "I cried the whole way home.",
        "Nothing matters without you.",
        "They forgot my birthday again.",
        "I can't stop thinking about him.",
    ),
    "happy": (
        "This is the best day ever!",
        "We won the championship!",
        "I got the job!",
        "I'm so happy for you!",
        "We're having a baby!",
        "I can't wait to see you tonight!",
        "She said yes!",
        "That was the most fun I've had in years.",
        "I passed all my exams!",
        "You made my whole week!",
        "We're going to Hawaii!",
        "I love this song so much!",
        "Look, it's snowing outside!",
        "Happy birthday, you look amazing!",
        "I finally finished the marathon!",
        "This cake is delicious!",
        "Everything worked out perfectly.",
        "I'm so proud of us.",
        "You remembered, that's so sweet!",
        "We got the house!",
    ),
}

# Sentences shared by the emotions of one valence: the words say "negative"
# or "mild", the voice has to say how strongly.
VALENCE_SENTENCES = {
    ("angry", "sad"): (
        "Why does this always happen to me?",
        "I can't believe you did that.",
        "This isn't fair.",
        "You promised me.",
        "I don't want to talk about it.",
        "Just leave me alone.",
        "It's all ruined now.",
        "How could you do this to me?",
        "I trusted you.",
        "Nothing ever goes right.",
        "You weren't there when I needed you.",
        "It's over.",
        "I waited for hours.",
        "You always do this.",
        "I'm not okay.",
        "They cancelled it again.",
        "It wasn't supposed to end like this.",
        "I gave you everything.",
        "Don't say that.",
        "Why didn't anyone tell me?",
    ),
    ("neutral", "happy"): (
        "Sounds good.",
        "Sure, I can do that.",
        "That works for me.",
        "We're meeting them on Friday.",
        "I'll see you tomorrow then.",
        "It's a nice day outside.",
        "The results came in.",
        "They're coming over for dinner.",
        "I got a letter from Sarah.",
        "We're going to the beach this weekend.",
        "The new place has a big kitchen.",
        "I talked to my mom today.",
        "Let's get lunch.",
        "That's a good idea.",
        "The movie starts at eight.",
        "I just got home.",
        "We finished the project.",
        "My brother is visiting next week.",
        "Okay, let's do it.",
        "I heard the news.",
    ),
}

# Sentences any emotion may carry; only the voice tells them apart.
AMBIGUOUS_SENTENCES = (
    "Okay, if you say so.",
    "Thank you for telling me.",
    "Are you serious right now?",
    "I really don't know what to say.",
    "Well, here we are again.",
    "Oh my god, look at this.",
    "So that's what happened.",
    "I didn't expect that.",
    "Is that all?",
    "You did what?",
    "Tell me everything.",
    "I heard what you said.",
    "We need to talk.",
    "It's him again.",
    "What just happened?",
    "Wow, I can't believe it.",
)

# Share of each emotion's utterances drawn from its own sentences, from the
# sentences of its valence, and from the ambiguous ones. A perfect text-only
# classifier scores about 0.40 + 0.35 / 2 + 0.25 / 4 = 0.64.
SENTENCE_KIND_SHARES = {"emotion": 0.40, "valence": 0.35, "ambiguous": 0.25}

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


# ============================================================================
# Corpus assembly
# ============================================================================


@dataclass(frozen=True)
class UtterancePlan:
    index: int  # seeds this utterance's random stream
    id: str
    speaker: str
    label: str
    text: str


def _sentence_pools(label: str) -> dict[str, tuple[str, ...]]:
    valence = next(s for emotions, s in VALENCE_SENTENCES.items() if label in emotions)
    return {
        "emotion": EMOTION_SENTENCES[label],
        "valence": valence,
        "ambiguous": AMBIGUOUS_SENTENCES,
    }


def plan_utterances(
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    seed: int = 0,
) -> list[UtterancePlan]:
    """Who says what in which emotion: the corpus without its audio.

    Each emotion's utterances cycle through sentence kinds in the proportions
    of SENTENCE_KIND_SHARES and through each pool in a seeded order. Emotions
    that share a pool walk it in the same order, so even a small corpus has
    every shared sentence under several emotions.
    """
    labels = _check_parameters(num_speakers, per_class, labels)
    rng = np.random.default_rng([seed, TEXT_STREAM])
    order = {}  # one seeded order per pool, shared by the emotions using it
    for pool in [*EMOTION_SENTENCES.values(), *VALENCE_SENTENCES.values(), AMBIGUOUS_SENTENCES]:
        order[pool] = [pool[i] for i in rng.permutation(len(pool))]

    kinds = list(SENTENCE_KIND_SHARES)
    shares = np.array(list(SENTENCE_KIND_SHARES.values()))
    texts = {}
    for label in labels:
        pools, drawn, used = _sentence_pools(label), np.zeros(len(kinds)), Counter()
        sequence = []
        for position in range(num_speakers * per_class):
            # The kind furthest behind its share comes next: an even spread.
            kind = kinds[int(np.argmax(shares * (position + 1) - drawn))]
            drawn[kinds.index(kind)] += 1
            pool = order[pools[kind]]
            sequence.append(pool[used[kind] % len(pool)])
            used[kind] += 1
        texts[label] = sequence

    width = max(2, len(str(per_class)))
    plans = []
    for speaker_index in range(num_speakers):
        speaker = f"spk{speaker_index + 1:02d}"
        for label in labels:
            for k in range(per_class):
                plans.append(
                    UtterancePlan(
                        index=len(plans),
                        id=f"{speaker}_{label}_{k + 1:0{width}d}",
                        speaker=speaker,
                        label=label,
                        text=texts[label][speaker_index * per_class + k],
                    )
                )
    return plans


def shared_sentence_fraction(rows) -> float:
    """Share of distinct sentences that occur under more than one label."""
    labels_of = defaultdict(set)
    for row in rows:
        labels_of[row["text"]].add(row["label"])
    return sum(len(v) > 1 for v in labels_of.values()) / max(1, len(labels_of))


def speaker_holdout_fold(speakers: list[SpeakerVoice], rows: list[dict]) -> Fold:
    """Test: the last low- and high-pitched speakers; val: the two before; train: the rest."""
    low = [s.name for s in speakers if s.pitch == "low"]
    high = [s.name for s in speakers if s.pitch == "high"]
    test, val = {low[-1], high[-1]}, {low[-2], high[-2]}
    split_of = {name: "train" for name in low + high}
    split_of.update({name: "test" for name in test} | {name: "val" for name in val})
    ids = defaultdict(list)
    for row in rows:
        ids[split_of[row["speaker"]]].append(row["id"])
    return Fold(FOLD_NAME, ids["train"], ids["val"], ids["test"])


def _check_parameters(num_speakers, per_class, labels, sample_rate=16000) -> tuple[str, ...]:
    if not isinstance(num_speakers, int) or num_speakers < MIN_SPEAKERS:
        raise InputError(
            f"the demo corpus needs at least {MIN_SPEAKERS} speakers (2 test, 2 validation, "
            f"2 or more training), got {num_speakers}; use --speakers {MIN_SPEAKERS} or more"
        )
    if not isinstance(per_class, int) or per_class < 1:
        raise InputError(
            f"utterances per class and speaker must be at least 1, got {per_class}; "
            "use --per-class 1 or more"
        )
    labels = tuple(labels)
    unknown = [label for label in labels if label not in EMOTIONS]
    if unknown or len(labels) < 2 or len(set(labels)) != len(labels):
        raise InputError(
            f"demo labels must be 2 or more distinct names out of {', '.join(EMOTIONS)}, "
            f"got {list(labels)}"
        )
    if sample_rate < 16000:
        raise InputError(f"the demo corpus needs a sample rate of 16000 Hz or more, got {sample_rate}")
    return labels


def _parameters(seed, num_speakers, per_class, labels, sample_rate) -> dict:
    return {
        "version": DEMO_VERSION,
        "seed": seed,
        "num_speakers": num_speakers,
        "per_class": per_class,
        "labels": list(labels),
        "sample_rate": sample_rate,
    }


def _read_info(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def generate_demo_corpus(
    out_dir: str | Path,
    seed: int = 0,
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    sample_rate: int = AudioConfig().sample_rate,
    progress: bool = True,
) -> Path:
    """Writes the demo corpus into `out_dir` (always) and returns the manifest path."""
    out_dir = Path(out_dir).resolve()
    labels = _check_parameters(num_speakers, per_class, labels, sample_rate)
    if (out_dir / MANIFEST_FILE).exists() and _read_info(out_dir) is None:
        raise InputError(
            f"{out_dir} holds a manifest that is not a demo corpus; "
            "choose an empty or demo folder for --out"
        )
    parameters = _parameters(seed, num_speakers, per_class, labels, sample_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Marked incomplete until the last file is written, so an interrupted run is redone.
    _write_json(out_dir / INFO_FILE, {"parameters": parameters, "complete": False})

    speakers = make_speakers(num_speakers, seed)
    voice_of = {s.name: s for s in speakers}
    plans = plan_utterances(num_speakers, per_class, labels, seed)
    rows, written = [], set()
    for plan in tqdm(plans, desc="demo corpus", unit="utt", file=sys.stderr, disable=not progress):
        rng = np.random.default_rng([seed, UTTERANCE_STREAM, plan.index])
        voice = voice_of[plan.speaker]
        samples = synthesize_utterance(plan.text, plan.label, voice, rng, sample_rate)
        path = write_pcm16(out_dir / "wav" / plan.speaker / f"{plan.id}.wav", samples, sample_rate)
        written.add(path)
        rows.append(
            make_row(
                plan.id,
                plan.label,
                audio=str(path),
                text=plan.text,
                speaker=plan.speaker,
                corpus=CORPUS,
            )
        )
    for stale in (out_dir / "wav").glob("*/*.wav"):  # left over from other parameters
        if stale not in written:
            stale.unlink()

    manifest = write_manifest(rows, out_dir / MANIFEST_FILE)
    write_splits(rows, PROTOCOL, [speaker_holdout_fold(speakers, rows)], out_dir)
    _write_json(
        out_dir / INFO_FILE,
        {
            "parameters": parameters,
            "complete": True,
            "utterances": len(rows),
            "per_label": dict(Counter(row["label"] for row in rows)),
            "shared_sentence_fraction": round(shared_sentence_fraction(rows), 4),
            "speakers": [asdict(s) for s in speakers],
        },
    )
    return manifest


def ensure_demo_corpus(
    out_dir: str | Path = DataConfig().demo_dir,
    seed: int = 0,
    num_speakers: int = 10,
    per_class: int = 12,
    labels=EMOTIONS,
    sample_rate: int = AudioConfig().sample_rate,
    progress: bool = True,
) -> Path:
    """The demo manifest in `out_dir`, generated only if missing or made with other parameters."""
    out_dir = Path(out_dir).resolve()
    labels = _check_parameters(num_speakers, per_class, labels, sample_rate)
    info = _read_info(out_dir)
    wanted = _parameters(seed, num_speakers, per_class, labels, sample_rate)
    manifest = out_dir / MANIFEST_FILE
    if (
        info is not None
        and info.get("complete")
        and info.get("parameters") == wanted
        and manifest.is_file()
        and (out_dir / "splits.json").is_file()
    ):
        return manifest
    return generate_demo_corpus(
        out_dir, seed, num_speakers, per_class, labels, sample_rate, progress
    )


def _write_json(path: Path, document: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# ============================================================================
# Command line
# ============================================================================


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.data.demo",
        description="Generate the synthetic speech + text emotion corpus (no download needed).",
    )
    parser.add_argument(
        "--out", default=DataConfig().demo_dir, help="corpus folder (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--speakers",
        type=int,
        default=10,
        help="number of speakers, alternately low- and high-pitched (default: %(default)s)",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=12,
        help="utterances per emotion and speaker (default: %(default)s)",
    )
    parser.add_argument(
        "--labels",
        default=",".join(EMOTIONS),
        help="comma-separated labels in class-id order (default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the folder holds this corpus"
    )
    args = parser.parse_args(argv)

    labels = tuple(label.strip() for label in args.labels.split(",") if label.strip())
    build = generate_demo_corpus if args.force else ensure_demo_corpus
    manifest = build(args.out, args.seed, args.speakers, args.per_class, labels)
    rows = read_manifest(manifest)
    counts = Counter(row["label"] for row in rows)
    print(f"{manifest}: {len(rows)} utterances, {len({r['speaker'] for r in rows})} speakers")
    print("per label: " + ", ".join(f"{label} {counts[label]}" for label in labels))
    print(f"sentences under more than one label: {shared_sentence_fraction(rows):.0%}")
    return 0


if __name__ == "__main__":
    from bimer_tf.cli import run_main

    raise SystemExit(run_main(main))

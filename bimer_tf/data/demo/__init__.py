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

    sentences.py     the sentence bank and the share of each sentence kind
    synthesizer.py   speakers, emotion prosody, syllables, source-filter synthesis
    corpus.py        utterance plans, the speaker-holdout fold, generate/ensure, demo_info.json
    __main__.py      python -m bimer_tf.data.demo --out data/demo [--seed 0] [--speakers 10] [--per-class 12]
"""

from bimer_tf.data.demo.corpus import (
    CORPUS,
    DEMO_VERSION,
    FOLD_NAME,
    INFO_FILE,
    MANIFEST_FILE,
    MIN_SPEAKERS,
    PROTOCOL,
    UtterancePlan,
    ensure_demo_corpus,
    generate_demo_corpus,
    plan_utterances,
    shared_sentence_fraction,
    speaker_holdout_fold,
)
from bimer_tf.data.demo.sentences import (
    AMBIGUOUS_SENTENCES,
    EMOTION_SENTENCES,
    SENTENCE_KIND_SHARES,
    VALENCE_SENTENCES,
)
from bimer_tf.data.demo.synthesizer import (
    EMOTION_PROSODY,
    EMOTIONS,
    MAX_DURATION_S,
    MIN_DURATION_S,
    SPEAKER_STREAM,
    TEXT_STREAM,
    UTTERANCE_STREAM,
    EmotionProsody,
    SpeakerVoice,
    Syllable,
    make_speakers,
    parse_syllables,
    synthesize_utterance,
)

__all__ = [
    "AMBIGUOUS_SENTENCES",
    "CORPUS",
    "DEMO_VERSION",
    "EMOTIONS",
    "EMOTION_PROSODY",
    "EMOTION_SENTENCES",
    "EmotionProsody",
    "FOLD_NAME",
    "INFO_FILE",
    "MANIFEST_FILE",
    "MAX_DURATION_S",
    "MIN_DURATION_S",
    "MIN_SPEAKERS",
    "PROTOCOL",
    "SENTENCE_KIND_SHARES",
    "SPEAKER_STREAM",
    "SpeakerVoice",
    "Syllable",
    "TEXT_STREAM",
    "UTTERANCE_STREAM",
    "UtterancePlan",
    "VALENCE_SENTENCES",
    "ensure_demo_corpus",
    "generate_demo_corpus",
    "make_speakers",
    "parse_syllables",
    "plan_utterances",
    "shared_sentence_fraction",
    "speaker_holdout_fold",
    "synthesize_utterance",
]

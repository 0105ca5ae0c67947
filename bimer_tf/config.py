"""Experiment configuration: nested dataclasses, YAML overrides, `--set`.

Defaults live in the dataclasses below and nowhere else. A YAML file (the
`train.py --model NAME` defaults in `bimer_tf/default_configs/`, the corpus
recipes in the repository's `configs/`) holds only the values it changes;
`--set a.b=value` overrides one field on top (the value is parsed as YAML, so
`--set trainer.epochs=3` gives an int and `--set data.labels=[a,b]` a list).
Unknown keys are an error that names the key. The resolved config is written
to the run directory. The flat `model.speech` keys of earlier releases
(`model.speech.gru_units`, `model.speech.whisper_layers`, ...) are still read
(`upgrade_legacy_config`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bimer_tf.errors import InputError

# The `train.py --model NAME` defaults ship inside the package (package data),
# so an installed bimer_tf finds them without the repository.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent / "default_configs"


PAD_MODES = ("zeros", "repeat")
WHISPER_POOLINGS = ("attention", "mean_std", "attentive_mean_std")


@dataclass
class AudioConfig:
    """Front end shared by the input pipeline and the serving graph."""

    sample_rate: int = 16000
    # Longer audio is cropped (after trimming) and shorter audio padded to
    # this duration, by `pad_mode`: "zeros" (silence) or "repeat" (the clip
    # again from its start, so a short clip fills the window with speech and
    # pooled statistics do not depend on how short it was).
    max_duration_s: float = 6.0
    pad_mode: str = "zeros"
    # Leading/trailing frames quieter than this many dB below the loudest
    # frame are trimmed (librosa.effects.trim's rule, in-graph).
    trim_top_db: float = 30.0
    trim_frame_length: int = 1024
    trim_hop_length: int = 256
    # Peak below this (dBFS) counts as silent audio and is rejected.
    silence_floor_dbfs: float = -60.0
    # RMS level (dBFS) the trimmed audio is scaled to, or null to keep its
    # own level. A served request's gain (microphone, distance, a corpus'
    # normalisation) then carries no information the model could learn from.
    loudness_dbfs: float | None = None
    # The paper's log-mel: HTK mel scale, 128 bands, n_fft 1024, hop 512.
    n_mels: int = 128
    n_fft: int = 1024
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    # Dynamic range kept below the utterance's loudest mel bin; the log-mel is
    # scaled to [0, 1] over this range (what the paper's image rendering did).
    top_db: float = 80.0
    # 1: plain log-mel. 3: an image for ImageNet backbones, rendered by
    # `channel_mode` "viridis" (as in the paper) or "repeat".
    channels: int = 1
    channel_mode: str = "repeat"
    # Append a 12-bin chromagram (from the same STFT) to the mel bins: the
    # MM-EMOR mel + chroma image.
    chroma: bool = False


@dataclass
class SpecAugmentConfig:
    """On-the-fly masking of training batches (never evaluation or serving)."""

    enabled: bool = True
    # A mask width is drawn per example from these values (the paper's 15/20/25).
    freq_mask_widths: list[int] = field(default_factory=lambda: [15, 20, 25])
    num_freq_masks: int = 1
    time_mask_max_frames: int = 0  # 0 disables time masking
    num_time_masks: int = 0


@dataclass
class TextConfig:
    """Text preprocessing: a keras-hub BERT tokenizer."""

    # "minilm-offline" (the pip-installed all-MiniLM-L6-v2), a keras-hub
    # preset name such as "bert_base_en_uncased", or a local preset folder.
    preset: str = "minilm-offline"
    sequence_length: int = 48


@dataclass
class DataConfig:
    # Labels in class-id order: the one label map of an experiment.
    labels: list[str] = field(default_factory=lambda: ["neutral", "angry", "sad", "happy"])
    # The demo corpus is generated here on first use when `manifest` is null.
    demo_dir: str = "data/demo"
    manifest: str | None = None
    splits: str | None = None  # default: splits.json beside the manifest
    fold: str | None = None  # default: the first fold
    protocol: str | None = None  # default: the protocol in splits.json
    batch_size: int = 16
    shuffle_buffer: int = 2048
    # Cache the front end's features: in memory when reading the manifest
    # (pays for corpora that fit in RAM), in files under the run directory
    # when reading shards.
    cache: bool = True
    # "manifest" (the manifest and splits above) or "tfrecord": the sharded
    # TFRecords in `shards`, the folder `python -m bimer_tf.data.shard` wrote
    # (local or gs://...; `{fold}` in it is replaced by the fold, for crossval).
    format: str = "manifest"
    shards: str | None = None


@dataclass
class ResNetCNNConfig:
    """`resnet_cnn`: BiMER's ResNet-CNN (SpeechResNetCNNBackbone), one residual block per width."""

    stage_widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])


@dataclass
class ResNetCRNNATConfig:
    """`resnet_crnn_at`: BiMER's ResNet-CRNN+AT (SpeechResNetCRNNBackbone)."""

    # A stem, then `blocks_per_stage` residual blocks per width.
    stage_widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    blocks_per_stage: int = 1
    gru_units: int = 256
    attention_units: int = 128
    transformer_heads: int = 8
    transformer_intermediate_dim: int = 1024
    transformer_layers: int = 1
    dropout: float = 0.3
    feature_dim: int = 512


@dataclass
class ResNet50CRNNATConfig:
    """`resnet50_crnn_at`: BiMER's ResNet50-CRNN+AT (SpeechResNet50CRNNBackbone)."""

    # "imagenet" (downloaded once), a path to a local weights file, or "none"
    # (random init).
    weights: str = "none"
    conv_filters: int = 256  # 2048 ResNet50 channels -> conv_filters before attention
    gru_units: int = 256
    transformer_heads: int = 8
    transformer_intermediate_dim: int = 1024
    transformer_layers: int = 1
    dropout: float = 0.3
    feature_dim: int = 512


@dataclass
class MobileNetConfig:
    """`mobilenet`: MM-EMOR's MobileNet (SpeechMobileNetBackbone)."""

    weights: str = "none"  # as for resnet50_crnn_at
    alpha: float = 1.0  # width multiplier; ImageNet weights exist for 0.25, 0.5, 0.75, 1.0
    dropout: float = 0.3
    feature_dim: int = 512


@dataclass
class WhisperConfig:
    """`whisper`: a pretrained Whisper encoder (SpeechWhisperBackbone)."""

    # "whisper-tiny-offline", "whisper-base-offline", a CTranslate2 folder, or
    # a keras-hub Whisper preset (online).
    source: str = "whisper-base-offline"
    # Encoder layers used (0: all): a middle layer often carries more of how
    # something is said than the last one.
    layers: int = 0
    # Top encoder layers fine-tuned; the frozen rest runs in the input
    # pipeline (cached with data.cache) and in the serving graph.
    trainable_layers: int = 0
    # In training, replace about this share of the frames entering the
    # fine-tuned layers with a learned vector, in spans of time_mask_span
    # frames (SpecAugment time masking of cached states, as wav2vec 2.0
    # fine-tunes). Needs trainable_layers >= 1.
    time_mask_rate: float = 0.0
    time_mask_span: int = 10
    # Read out a learned weighted sum of every hidden state (the embedding and
    # each layer in use, each standardised per frame) instead of the last
    # layer in use alone; the cache then holds all of them. Needs
    # trainable_layers=0.
    layer_sum: bool = False
    # Leave the frames that hold only the window's zero padding out of the
    # pooling (the front end zeroes their states; the backbone masks them).
    # Needs an attention pooling, audio.pad_mode=zeros and trainable_layers=0.
    mask_padding: bool = False
    # One of WHISPER_POOLINGS: "attention" (weighted mean), "mean_std" (mean
    # and std over time) or "attentive_mean_std" (attention-weighted mean and std).
    pooling: str = "attention"
    # Standardise the encoder states over time, per utterance, before pooling
    # (removes one clip's speaker/channel offsets; no speaker history). Needs
    # an attention pooling.
    normalize_states: bool = False
    # Share of the encoder's frames left out of the attention pooling in
    # training (each epoch anew, also from cached states): SpecAugment-style
    # time masking of the states. Needs an attention pooling.
    frame_dropout: float = 0.0
    # Batch-normalise the pooled vector (standardises the encoder's feature
    # scales, as a linear probe's scaler does).
    normalize_pooled: bool = False
    attention_units: int = 128
    dropout: float = 0.3
    feature_dim: int = 512


@dataclass
class SpeechModelConfig:
    """The speech backbone: `type` names one of the sections below, which holds
    that backbone's settings (the other sections are ignored). The valid types
    are the section names."""

    type: str = "resnet_crnn_at"
    resnet_cnn: ResNetCNNConfig = field(default_factory=ResNetCNNConfig)
    resnet_crnn_at: ResNetCRNNATConfig = field(default_factory=ResNetCRNNATConfig)
    resnet50_crnn_at: ResNet50CRNNATConfig = field(default_factory=ResNet50CRNNATConfig)
    mobilenet: MobileNetConfig = field(default_factory=MobileNetConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)

    def selected(self):
        """The section of the backbone `type` names."""
        return getattr(self, self.type)


# The model.speech.type values: the names of SpeechModelConfig's sections.
SPEECH_TYPES = tuple(f.name for f in dataclasses.fields(SpeechModelConfig) if f.name != "type")


@dataclass
class TextModelConfig:
    type: str = "bert"  # "bert" (BertBackbone) or "roberta" (RobertaBackbone)
    trainable: bool = True
    pooling: str = "mean"  # "mean" over tokens (how MiniLM was trained) or "cls"
    dropout: float = 0.1
    feature_dim: int = 256


@dataclass
class InitConfig:
    """Run directories whose trained weights start this model's branches."""

    speech: str | None = None  # e.g. a finished `ser_*` run
    text: str | None = None  # e.g. a finished `ter_*` run


@dataclass
class ModelConfig:
    # bimer (BiMER fusion), mm_emor (MM-EMOR fusion), ser (speech only), ter (text only).
    type: str = "bimer"
    speech: SpeechModelConfig = field(default_factory=SpeechModelConfig)
    text: TextModelConfig = field(default_factory=TextModelConfig)
    fusion_dropout: float = 0.2
    # Single-modality heads: dropout before the dense softmax (ResNet-CNN: 0.5).
    classifier_dropout: float = 0.3
    # MM-EMOR head: dense ReLU of `head_units` with an L2 penalty of `head_l2`.
    head_units: int = 256
    head_l2: float = 1e-4
    init: InitConfig = field(default_factory=InitConfig)


@dataclass
class TrainerConfig:
    epochs: int = 30
    optimizer: str = "adamw"
    learning_rate: float = 1e-5
    weight_decay: float = 1e-3
    seed: int = 1234
    # Stop when validation UA has not improved for this many epochs (0: never).
    early_stopping_patience: int = 0
    # "none", or "balanced": each class weighs n_rows / (n_classes * its rows),
    # over the training rows actually kept, so imbalanced corpora do not
    # reward predicting the majority class.
    class_weight: str = "none"
    # "constant", or "warmup_cosine": linear warmup from 0 over `warmup_ratio`
    # of all training steps, then cosine decay to 0 (for fine-tuning BERT).
    lr_schedule: str = "constant"
    warmup_ratio: float = 0.1
    # Glob pattern over variable paths -> factor on the learning rate, e.g.
    # {"transformer_encoder_layer_*": 0.1} to fine-tune a pretrained layer
    # slowly (bimer_tf/training/optimizer.py).
    learning_rate_multipliers: dict[str, float] = field(default_factory=dict)
    # Momentum of an exponential moving average of the trainable weights, per
    # optimizer step (0: off). When on, validation, the best checkpoint and so
    # the exported model use the averaged weights; training goes on from the
    # raw ones. 0.99 averages over about the last 100 steps.
    ema_momentum: float = 0.0
    # Knowledge distillation: finished run directories (`{fold}` in a path is
    # replaced by data.fold) whose best checkpoints' mean probabilities on each
    # training row are mixed into that row's target: (1 - teacher_weight) x
    # its label + teacher_weight x the teachers' probabilities, sharpened or
    # softened by teacher_temperature (p^(1/T), renormalised; T > 1 softens).
    # Serves an ensemble's knowledge at one model's cost
    # (bimer_tf/training/distill.py).
    teachers: list[str] = field(default_factory=list)
    teacher_weight: float = 0.5
    teacher_temperature: float = 1.0
    # "all": every teacher answers every training row; "unseen": a row's
    # target averages only the teachers that did not train on it (the members
    # of `split --members`, each of which left out some training speakers).
    teacher_rows: str = "all"


def check_learning_rate_multipliers(multipliers: dict) -> None:
    """String patterns, finite positive factors."""
    for pattern, factor in multipliers.items():
        if not isinstance(pattern, str) or not pattern:
            raise InputError(
                f"trainer.learning_rate_multipliers: a key must be a variable path pattern, got {pattern!r}"
            )
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise InputError(
                f"trainer.learning_rate_multipliers['{pattern}'] must be a positive number, got {factor!r} "
                "(to freeze variables, make their layer non-trainable instead)"
            )


def validate_trainer(trainer: TrainerConfig) -> None:
    if trainer.epochs < 1:
        raise InputError(f"trainer.epochs must be at least 1, got {trainer.epochs}")
    if trainer.class_weight not in ("none", "balanced"):
        raise InputError(f"trainer.class_weight must be 'none' or 'balanced', got '{trainer.class_weight}'")
    if trainer.lr_schedule not in ("constant", "warmup_cosine"):
        raise InputError(
            f"trainer.lr_schedule must be 'constant' or 'warmup_cosine', got '{trainer.lr_schedule}'"
        )
    if not 0.0 <= trainer.warmup_ratio < 1.0:
        raise InputError(f"trainer.warmup_ratio must lie in [0, 1), got {trainer.warmup_ratio}")
    check_learning_rate_multipliers(trainer.learning_rate_multipliers)
    if not 0.0 <= trainer.ema_momentum < 1.0:
        raise InputError(
            f"trainer.ema_momentum must lie in [0, 1) (0: no weight averaging), got {trainer.ema_momentum}"
        )
    if not all(isinstance(path, str) and path for path in trainer.teachers):
        raise InputError(f"trainer.teachers must be a list of run directories, got {trainer.teachers!r}")
    if not 0.0 < trainer.teacher_weight <= 1.0:
        raise InputError(
            f"trainer.teacher_weight must lie in (0, 1] (the teachers' share of each training target), "
            f"got {trainer.teacher_weight}"
        )
    if trainer.teacher_rows not in ("all", "unseen"):
        raise InputError(f"trainer.teacher_rows must be 'all' or 'unseen', got '{trainer.teacher_rows}'")
    if not 0.0 < trainer.teacher_temperature <= 100.0:
        raise InputError(
            f"trainer.teacher_temperature must lie in (0, 100] (1: the teachers' probabilities as they are), "
            f"got {trainer.teacher_temperature}"
        )


@dataclass
class RuntimeConfig:
    # "auto": MirroredStrategy when several GPUs are visible, else the default
    # strategy; "mirrored"; "multi_worker" (reads TF_CONFIG); "default".
    strategy: str = "auto"
    mixed_precision: bool = False


@dataclass
class ExperimentConfig:
    name: str = "bimer-demo"
    audio: AudioConfig = field(default_factory=AudioConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    text: TextConfig = field(default_factory=TextConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# `train.py --model NAME` reads bimer_tf/default_configs/NAME.yaml, which runs
# offline on the demo corpus on a CPU. NAME -> (model.type, model.speech.type,
# model.text.type, description); None where the name does not fix that branch.
MODEL_NAMES = {
    "bimer": ("bimer", None, "bert", "BiMER: spectrogram CNN speech + BERT text, concatenated (demo: ResNet-CRNN+AT)"),
    "bimer_whisper": ("bimer", "whisper", "bert", "BiMER fusion over a pretrained Whisper encoder + BERT"),
    "mm_emor": ("mm_emor", "mobilenet", None, "MM-EMOR: MobileNet on mel + chroma, pooled text encoder"),
    "ser_resnet_cnn": ("ser", "resnet_cnn", None, "speech only: BiMER's ResNet-CNN"),
    "ser_resnet_crnn_at": ("ser", "resnet_crnn_at", None, "speech only: ResNet-CRNN+AT"),
    "ser_resnet50_crnn_at": ("ser", "resnet50_crnn_at", None, "speech only: ResNet50-CRNN+AT"),
    "ser_mobilenet": ("ser", "mobilenet", None, "speech only: MobileNet on mel + chroma"),
    "ser_whisper": ("ser", "whisper", None, "speech only: pretrained Whisper encoder + attention pooling"),
    "ter_bert": ("ter", None, "bert", "text only: fine-tuned BERT (offline MiniLM)"),
    "ter_roberta": ("ter", None, "roberta", "text only: RoBERTa (keras-hub preset, needs the network once)"),
}


def _merge(obj, overrides: dict, path: str = ""):
    """Applies a nested dict of overrides to a dataclass, in place."""
    if not isinstance(overrides, dict):
        raise InputError(f"config section '{path or '<root>'}' must be a mapping, got {overrides!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise InputError(
                f"unknown config key '{key_path}'; valid keys here: {', '.join(sorted(names))}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, key_path)
        else:
            setattr(obj, key, _coerce(value, hints[key], key_path))
    return obj


def _coerce(value, hint, key_path):
    """Checks a YAML value against a field's type (ints are accepted as floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise InputError(f"config key '{key_path}' may not be null")
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        return _coerce(value, hint, key_path)
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"config key '{key_path}' expects a mapping, got {value!r}")
        return {k: _coerce(v, args[1], f"{key_path}.{k}") for k, v in value.items()} if args else value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"config key '{key_path}' expects a list, got {value!r}")
        return [_coerce(v, args[0], key_path) for v in value] if args else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint is bool and not isinstance(value, bool):
        raise InputError(f"config key '{key_path}' expects true/false, got {value!r}")
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise InputError(f"config key '{key_path}' expects {hint.__name__}, got {value!r}")
    return value


def parse_set(assignment: str) -> dict:
    """Turns 'a.b.c=value' into {'a': {'b': {'c': value}}}."""
    if "=" not in assignment:
        raise InputError(f"--set expects key.path=value, got '{assignment}'")
    key, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as error:
        raise InputError(f"--set {key}: cannot parse value '{raw}' ({error})") from None
    tree: dict = {}
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def _combine(trees: list[dict]) -> dict:
    """Nested dicts merged key by key; a later value replaces an earlier one."""
    combined: dict = {}
    for tree in trees:
        for key, value in tree.items():
            if isinstance(value, dict) and isinstance(combined.get(key), dict):
                combined[key] = _combine([combined[key], value])
            else:
                combined[key] = value
    return combined


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InputError(f"config file {path} is not valid YAML: {error}") from None
    return data or {}


def model_config_file(model: str) -> Path:
    """bimer_tf/default_configs/<model>.yaml for a `train.py --model` name."""
    if model not in MODEL_NAMES:
        raise InputError(f"unknown model '{model}'; choose one of: {', '.join(MODEL_NAMES)}")
    return DEFAULT_CONFIG_DIR / f"{model}.yaml"


def load_config(
    config_file: str | Path | None = None,
    overrides: list[str] = (),
    model: str | None = None,
) -> ExperimentConfig:
    """Defaults <- config file (or the model's own file) <- --set overrides.

    With both a file and a `model` name (`train.py --model bimer --config
    configs/iemocap/bimer.yaml`) the file is used and must describe that model.
    """
    config = ExperimentConfig()
    if model is not None:
        default_file = model_config_file(model)
        config_file = config_file if config_file is not None else default_file
    if config_file is not None:
        _merge(config, upgrade_legacy_config(read_yaml(config_file)))
    if model is not None:  # before --set: an explicit override may change a branch
        check_model_name(config, model, config_file)
    if overrides:  # one tree, so that a legacy key and its section form clash across --set too
        _merge(config, upgrade_legacy_config(_combine([parse_set(assignment) for assignment in overrides])))
    validate(config)
    return config


def check_model_name(config: ExperimentConfig, model: str, source) -> None:
    """Fails when a config's task or branches are not those `model` names."""
    task, speech, text, _ = MODEL_NAMES[model]
    found = {"model.type": config.model.type}
    expected = {"model.type": task}
    if speech is not None:
        found["model.speech.type"], expected["model.speech.type"] = config.model.speech.type, speech
    if text is not None:
        found["model.text.type"], expected["model.text.type"] = config.model.text.type, text
    wrong = [f"{key}={found[key]} (expected {value})" for key, value in expected.items() if found[key] != value]
    if wrong:
        raise InputError(
            f"--model {model} does not match {source}: {', '.join(wrong)}; "
            f"drop --model, or pick the model that the config describes"
        )


def validate(config: ExperimentConfig) -> None:
    validate_trainer(config.trainer)
    labels = config.data.labels
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise InputError(f"data.labels must hold at least 2 distinct labels, got {labels}")
    if config.audio.channels not in (1, 3):
        raise InputError(f"audio.channels must be 1 or 3, got {config.audio.channels}")
    if config.audio.channel_mode not in ("repeat", "viridis"):
        raise InputError(f"audio.channel_mode must be 'repeat' or 'viridis', got '{config.audio.channel_mode}'")
    if config.audio.pad_mode not in PAD_MODES:
        raise InputError(f"audio.pad_mode must be one of {', '.join(PAD_MODES)}, got '{config.audio.pad_mode}'")
    loudness = config.audio.loudness_dbfs
    if loudness is not None and not -60.0 <= loudness <= 0.0:
        raise InputError(f"audio.loudness_dbfs must lie in -60..0 dBFS (or be null), got {loudness}")
    if config.spec_augment.enabled and not config.spec_augment.freq_mask_widths:
        raise InputError("spec_augment.freq_mask_widths is empty; give at least one width or set spec_augment.enabled=false")
    if any(w <= 0 or w >= config.audio.n_mels for w in config.spec_augment.freq_mask_widths):
        raise InputError(
            f"spec_augment.freq_mask_widths must lie in 1..{config.audio.n_mels - 1}, "
            f"got {config.spec_augment.freq_mask_widths}"
        )
    model = config.model
    choices = {
        "model.type": (model.type, ("bimer", "mm_emor", "ser", "ter")),
        "model.speech.type": (model.speech.type, SPEECH_TYPES),
        "model.speech.whisper.pooling": (model.speech.whisper.pooling, WHISPER_POOLINGS),
        "model.text.type": (model.text.type, ("bert", "roberta")),
    }
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise InputError(f"unknown {key} '{value}'; valid values: {', '.join(valid)}")
    uses_speech = model.type != "ter"
    if uses_speech and model.speech.type in ("resnet50_crnn_at", "mobilenet") and config.audio.channels != 3:
        raise InputError(
            f"model.speech.type={model.speech.type} is an ImageNet network and takes a 3-channel "
            f"image; set audio.channels=3 (got {config.audio.channels})"
        )
    if uses_speech and model.speech.type == "whisper":
        _validate_whisper(model.speech.whisper, config.audio)
    if config.model.text.pooling not in ("mean", "cls"):
        raise InputError(f"model.text.pooling must be 'mean' or 'cls', got '{config.model.text.pooling}'")


def _validate_whisper(whisper: WhisperConfig, audio: AudioConfig) -> None:
    """The checks of `model.speech.whisper` that its options' combinations need."""
    if min(whisper.trainable_layers, whisper.layers) < 0:
        raise InputError("model.speech.whisper.layers and model.speech.whisper.trainable_layers must be >= 0")
    if not 0.0 <= whisper.frame_dropout < 1.0:
        raise InputError(f"model.speech.whisper.frame_dropout must lie in [0, 1), got {whisper.frame_dropout}")
    if not 0.0 <= whisper.time_mask_rate < 1.0:
        raise InputError(f"model.speech.whisper.time_mask_rate must lie in [0, 1), got {whisper.time_mask_rate}")
    if whisper.time_mask_span < 1:
        raise InputError(f"model.speech.whisper.time_mask_span must be >= 1, got {whisper.time_mask_span}")
    if whisper.time_mask_rate and not whisper.trainable_layers:
        raise InputError(
            "model.speech.whisper.time_mask_rate needs model.speech.whisper.trainable_layers >= 1: "
            "it masks the fine-tuned layers' input (frozen states: use frame_dropout)"
        )
    if whisper.pooling == "mean_std":
        if whisper.normalize_states:
            raise InputError(
                "model.speech.whisper.normalize_states needs an attention pooling "
                "(model.speech.whisper.pooling=attention or attentive_mean_std): "
                "mean + std statistics of states standardised per utterance are constants"
            )
        for option, value in (("frame_dropout", whisper.frame_dropout), ("mask_padding", whisper.mask_padding)):
            if value:
                raise InputError(
                    f"model.speech.whisper.{option} needs an attention pooling "
                    "(model.speech.whisper.pooling=attention or attentive_mean_std), which takes a frame mask"
                )
    if whisper.trainable_layers and whisper.layer_sum:
        raise InputError(
            "model.speech.whisper.layer_sum needs model.speech.whisper.trainable_layers=0: "
            "the weighted sum reads the frozen encoder's cached states"
        )
    if whisper.trainable_layers and whisper.mask_padding:
        raise InputError(
            "model.speech.whisper.mask_padding needs model.speech.whisper.trainable_layers=0: "
            "fine-tuned layers would mix the zeroed padding states back into the clip's"
        )
    if whisper.mask_padding and audio.pad_mode != "zeros":
        raise InputError(
            f"model.speech.whisper.mask_padding needs audio.pad_mode=zeros (got {audio.pad_mode}): "
            "the padding is found as the zeros after the clip"
        )


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


# Speech types renamed since earlier releases wrote run directories.
LEGACY_SPEECH_TYPES = {"crnn": "resnet_crnn_at"}

# Earlier releases kept every speech backbone's settings in one flat
# `model.speech` section; run directories' config.yaml, exports' metadata,
# YAML files and `--set` commands still hold that form. A flat key now lives
# in every backbone section with a field of its name, or of the name here.
LEGACY_SPEECH_RENAMES = {
    "mobilenet_alpha": "mobilenet.alpha",
    "whisper_source": "whisper.source",
    "whisper_layers": "whisper.layers",
    "whisper_trainable_layers": "whisper.trainable_layers",
}
LEGACY_SPEECH_KEYS = (
    "stage_widths", "blocks_per_stage", "gru_units", "attention_units", "transformer_heads",
    "transformer_intermediate_dim", "transformer_layers", "dropout", "feature_dim", "weights",
    "conv_filters", "pooling", "normalize_pooled", *LEGACY_SPEECH_RENAMES,
)


def legacy_speech_targets(key: str) -> list[str]:
    """The `section.field` names of `model.speech` that a flat legacy key sets."""
    if key in LEGACY_SPEECH_RENAMES:
        return [LEGACY_SPEECH_RENAMES[key]]
    sections = typing.get_type_hints(SpeechModelConfig)
    return [f"{name}.{key}" for name in SPEECH_TYPES if key in {f.name for f in dataclasses.fields(sections[name])}]


def upgrade_legacy_config(data: dict) -> dict:
    """A config dict (YAML file, `--set`, resolved config.yaml) in today's form.

    Renames `LEGACY_SPEECH_TYPES` and moves the flat `model.speech` keys of
    earlier releases into the backbone sections (`dropout` into every section
    with a dropout, `whisper_layers` into `whisper.layers`, ...). A flat key
    given together with its section form is an error naming both. The
    caller's dict is left unchanged.
    """
    model = data.get("model") if isinstance(data, dict) else None
    speech = model.get("speech") if isinstance(model, dict) else None
    if not isinstance(speech, dict):
        return data
    speech = dict(speech)
    if speech.get("type") in LEGACY_SPEECH_TYPES:
        speech["type"] = LEGACY_SPEECH_TYPES[speech["type"]]
    for key in [key for key in speech if key in LEGACY_SPEECH_KEYS]:
        value = speech.pop(key)
        for target in legacy_speech_targets(key):
            section_name, name = target.split(".")
            section = speech.get(section_name)
            if section is None:
                section = {}
            elif not isinstance(section, dict):
                continue  # _merge reports a section that is not a mapping
            if name in section:
                raise InputError(
                    f"config keys 'model.speech.{key}' and 'model.speech.{target}' are both given; "
                    f"keep 'model.speech.{target}' ('model.speech.{key}' is the form of earlier releases)"
                )
            speech[section_name] = {**section, name: value}
    return {**data, "model": {**model, "speech": speech}}


def from_dict(data: dict) -> ExperimentConfig:
    """The config of a resolved dict (a run directory's config.yaml), in today's
    form or that of an earlier release (`upgrade_legacy_config`)."""
    config = _merge(ExperimentConfig(), upgrade_legacy_config(data))
    validate(config)
    return config


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")

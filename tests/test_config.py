"""Config system: defaults, YAML files, `--set` overrides, errors, round trip."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bimer_tf.config import (
    DEFAULT_CONFIG_DIR,
    MODEL_NAMES,
    SPEECH_TYPES,
    AudioConfig,
    ExperimentConfig,
    SpeechModelConfig,
    WhisperConfig,
    from_dict,
    load_config,
    model_config_file,
    parse_set,
    save_config,
    to_dict,
)
from bimer_tf.errors import InputError

from conftest import REPO_ROOT

RECIPES = REPO_ROOT / "configs"  # the corpus recipes (not installed with the package)


def _write_yaml(tmp_path, data, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --- Defaults and files -----------------------------------------------------


def test_defaults_are_the_paper_front_end():
    config = load_config()
    assert config == ExperimentConfig()
    audio = config.audio
    assert (audio.sample_rate, audio.n_fft, audio.hop_length, audio.n_mels) == (16000, 1024, 512, 128)
    assert audio.fmax is None and audio.channels == 1
    assert config.spec_augment.freq_mask_widths == [15, 20, 25]
    assert config.data.labels == ["neutral", "angry", "sad", "happy"]


def test_yaml_overrides_only_what_it_names(tmp_path):
    path = _write_yaml(
        tmp_path,
        {"name": "mine", "audio": {"max_duration_s": 3, "fmax": 7600}, "trainer": {"epochs": 2}},
    )
    config = load_config(path)
    assert config.name == "mine"
    # ints are accepted where a float is expected, and stored as floats
    assert config.audio.max_duration_s == 3.0 and isinstance(config.audio.max_duration_s, float)
    assert config.audio.fmax == 7600.0
    assert config.trainer.epochs == 2
    assert config.audio.n_mels == AudioConfig().n_mels
    assert config.model == ExperimentConfig().model


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    assert load_config(path) == ExperimentConfig()


SHIPPED_CONFIGS = sorted(
    [p.relative_to(REPO_ROOT).as_posix() for p in RECIPES.rglob("*.yaml")]
    + [f"bimer_tf/default_configs/{p.name}" for p in DEFAULT_CONFIG_DIR.glob("*.yaml")]
)


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_load(name):
    config = load_config(REPO_ROOT / name)
    # Each file sets its own name, so loading it must change something.
    assert config.name == yaml.safe_load((REPO_ROOT / name).read_text())["name"]


def test_model_defaults_ship_inside_the_package():
    import configparser

    import bimer_tf

    # Found beside the package, so an installed bimer_tf trains without the repository...
    assert model_config_file("bimer").parent == Path(bimer_tf.__file__).resolve().parent / "default_configs"
    # ...and installed with it as package data (of a package: it needs an __init__.py).
    assert (model_config_file("bimer").parent / "__init__.py").is_file()
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    assert setup["options.package_data"]["bimer_tf.default_configs"].strip() == "*.yaml"


def test_every_model_name_has_a_config_that_matches_it():
    assert set(MODEL_NAMES) == {p.stem for p in DEFAULT_CONFIG_DIR.glob("*.yaml")}
    for name, (task, speech, text, _) in MODEL_NAMES.items():
        config = load_config(model=name)
        assert config.model.type == task
        assert speech is None or config.model.speech.type == speech
        assert text is None or config.model.text.type == text
        # Demo configs run offline on the demo corpus: no manifest of their own.
        assert config.data.manifest is None


@pytest.mark.parametrize("name", sorted(p.name for p in (RECIPES / "iemocap").glob("*.yaml")))
def test_paper_configs_say_where_their_values_come_from(name):
    header = (RECIPES / "iemocap" / name).read_text().split("\nname:")[0]
    assert header.startswith("# ") and ("2025" in header or "2023" in header)
    assert "configs/iemocap/README.md" in header
    # The recipe README gives the value sources and the command that trains it.
    assert f"--config configs/iemocap/{name}" in (RECIPES / "iemocap" / "README.md").read_text()


def test_paper_config_values():
    config = load_config(RECIPES / "iemocap" / "bimer.yaml")
    assert config.name == "bimer-paper"
    assert config.text.preset == "bert_base_en_uncased"
    assert config.model.speech.type == "resnet50_crnn_at"
    assert config.model.speech.resnet50_crnn_at.feature_dim + config.model.text.feature_dim == 768
    assert (config.trainer.learning_rate, config.trainer.weight_decay) == (1e-5, 1e-3)
    assert config.data.batch_size == 8


def test_model_name_uses_its_default_file():
    config = load_config(model="bimer")
    assert config.name == "bimer-demo"
    assert config == load_config(DEFAULT_CONFIG_DIR / "bimer.yaml")
    assert config.model.type == "bimer"
    assert config.model.text.trainable is False  # set by bimer.yaml, not a default


def test_model_name_with_a_config_file_must_match_it():
    config = load_config(RECIPES / "iemocap" / "bimer.yaml", model="bimer")
    assert config.name == "bimer-paper"
    with pytest.raises(InputError, match=r"--model ser_whisper does not match .*model.type=bimer \(expected ser\)"):
        load_config(RECIPES / "iemocap" / "bimer.yaml", model="ser_whisper")
    # An explicit --set may still change a branch.
    config = load_config(model="bimer", overrides=["model.speech.type=resnet_cnn"])
    assert config.model.speech.type == "resnet_cnn"


def test_unknown_model_name():
    with pytest.raises(InputError, match="unknown model 'gpt'.*bimer"):
        load_config(model="gpt")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.type=gpt", "unknown model.type 'gpt'"),
        ("model.speech.type=vgg", "unknown model.speech.type 'vgg'"),
        ("model.text.type=t5", "unknown model.text.type 't5'"),
        ("model.speech.whisper.pooling=max", "unknown model.speech.whisper.pooling 'max'"),
    ],
)
def test_unknown_registry_values(override, message):
    with pytest.raises(InputError, match=message):
        load_config(overrides=[override])


def test_imagenet_backbones_need_three_channels():
    with pytest.raises(InputError, match="audio.channels=3"):
        load_config(overrides=["model.speech.type=resnet50_crnn_at"])
    with pytest.raises(InputError, match="audio.channels=3"):
        load_config(overrides=["model.speech.type=mobilenet", "audio.channels=1"])
    # A text-only model does not care about the speech branch's channels.
    load_config(overrides=["model.type=ter", "model.speech.type=mobilenet"])


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(InputError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match="bad.yaml is not valid YAML"):
        load_config(bad)


# --- --set parsing ----------------------------------------------------------


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("trainer.epochs=3", {"trainer": {"epochs": 3}}),
        ("trainer.learning_rate=0.001", {"trainer": {"learning_rate": 0.001}}),
        ("trainer.learning_rate=1.0e-5", {"trainer": {"learning_rate": 1e-5}}),
        ("data.labels=[a, b, c]", {"data": {"labels": ["a", "b", "c"]}}),
        ("model.speech.resnet_cnn.stage_widths=[8,16]", {"model": {"speech": {"resnet_cnn": {"stage_widths": [8, 16]}}}}),
        ("data.cache=false", {"data": {"cache": False}}),
        ("runtime.mixed_precision=true", {"runtime": {"mixed_precision": True}}),
        ("name=my run", {"name": "my run"}),
        ("audio.fmax=null", {"audio": {"fmax": None}}),
        ("text.preset=a=b", {"text": {"preset": "a=b"}}),  # only the first '=' splits
        ("name=", {"name": ""}),
    ],
)
def test_parse_set(assignment, expected):
    assert parse_set(assignment) == expected


def test_parse_set_without_equals_or_with_bad_yaml():
    with pytest.raises(InputError, match="key.path=value.*trainer.epochs"):
        parse_set("trainer.epochs")
    with pytest.raises(InputError, match="data.labels: cannot parse value"):
        parse_set("data.labels=[a, b")


def test_overrides_apply_in_order_on_top_of_the_file(tmp_path):
    path = _write_yaml(tmp_path, {"trainer": {"epochs": 5, "seed": 7}})
    config = load_config(
        path,
        ["trainer.epochs=3", "trainer.epochs=4", "audio.channels=3", "audio.channel_mode=viridis",
         "model.speech.resnet_crnn_at.stage_widths=[8, 16]", "data.labels=[calm, loud]", "name="],
    )
    assert config.trainer.epochs == 4
    assert config.trainer.seed == 7
    assert (config.audio.channels, config.audio.channel_mode) == (3, "viridis")
    assert config.model.speech.resnet_crnn_at.stage_widths == [8, 16]
    assert config.data.labels == ["calm", "loud"]
    assert config.name == ""


def test_exponent_without_dot_is_a_float(tmp_path):
    assert load_config(overrides=["trainer.learning_rate=1e-4"]).trainer.learning_rate == 1e-4
    path = _write_yaml(tmp_path, {})
    path.write_text("trainer:\n  learning_rate: 3e-4\n", encoding="utf-8")
    assert load_config(path).trainer.learning_rate == 3e-4


# --- Errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment, key",
    [
        ("model.speech.widthz=1", "model.speech.widthz"),
        ("nonsense.key=1", "nonsense"),
        ("trainer.epoch=3", "trainer.epoch"),
    ],
)
def test_unknown_key_names_the_full_key(assignment, key):
    with pytest.raises(InputError, match=rf"unknown config key '{key}'; valid keys here: "):
        load_config(overrides=[assignment])


def test_unknown_key_in_a_yaml_file(tmp_path):
    path = _write_yaml(tmp_path, {"audio": {"sample_rte": 8000}})
    with pytest.raises(InputError, match="unknown config key 'audio.sample_rte'.*sample_rate"):
        load_config(path)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("trainer.epochs=three", "'trainer.epochs' expects int, got 'three'"),
        ("trainer.epochs=3.5", "'trainer.epochs' expects int"),
        ("trainer.epochs=true", "'trainer.epochs' expects int"),  # bools are not ints here
        ("trainer.learning_rate=fast", "'trainer.learning_rate' expects float"),
        ("data.cache=1", "'data.cache' expects true/false"),
        ("data.labels=neutral", "'data.labels' expects a list"),
        ("data.labels=[1, 2]", "'data.labels' expects str"),
        ("model.speech.resnet_crnn_at.stage_widths=[8, x]", "'model.speech.resnet_crnn_at.stage_widths' expects int"),
        ("name=[a]", "'name' expects str"),
        ("audio=16000", "section 'audio' must be a mapping"),
        ("model.speech=null", "section 'model.speech' must be a mapping"),
    ],
)
def test_wrong_type(assignment, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_config(overrides=[assignment])


@pytest.mark.parametrize("key", ["trainer.epochs", "name", "data.labels", "audio.sample_rate"])
def test_null_where_not_allowed(key):
    with pytest.raises(InputError, match=f"'{key}' may not be null"):
        load_config(overrides=[f"{key}=null"])


@pytest.mark.parametrize("key", ["audio.fmax", "audio.loudness_dbfs", "data.manifest", "data.fold"])
def test_null_where_allowed(key):
    config = load_config(overrides=[f"{key}=null"])
    section, name = key.split(".")
    assert getattr(getattr(config, section), name) is None


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("audio.channels=2", "audio.channels must be 1 or 3, got 2"),
        ("audio.channel_mode=jet", "audio.channel_mode must be 'repeat' or 'viridis', got 'jet'"),
        ("audio.pad_mode=reflect", "audio.pad_mode must be one of zeros, repeat, got 'reflect'"),
        ("audio.loudness_dbfs=6", "audio.loudness_dbfs must lie in -60..0 dBFS"),
        ("spec_augment.freq_mask_widths=[15, 128]", "freq_mask_widths must lie in 1..127"),
        ("spec_augment.freq_mask_widths=[0]", "freq_mask_widths must lie in 1..127"),
        ("data.labels=[only]", "at least 2 distinct labels"),
        ("data.labels=[a, a]", "at least 2 distinct labels"),
        ("model.text.pooling=max", "model.text.pooling must be 'mean' or 'cls'"),
    ],
)
def test_invalid_values(assignment, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_config(overrides=[assignment])


def test_freq_mask_widths_are_checked_against_n_mels():
    # 64 mel bands: the default 15/20/25 still fit, 64 does not.
    load_config(overrides=["audio.n_mels=64"])
    with pytest.raises(InputError, match=r"1\.\.63"):
        load_config(overrides=["audio.n_mels=64", "spec_augment.freq_mask_widths=[20, 64]"])


# --- Round trip -------------------------------------------------------------


def test_save_and_reload_gives_an_equal_config(tmp_path):
    config = load_config(
        RECIPES / "iemocap" / "bimer.yaml",
        ["audio.fmax=7600.5", "data.fold=session1", "audio.channels=3", "name=round trip"],
    )
    path = tmp_path / "resolved.yaml"
    save_config(config, path)
    reloaded = from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert reloaded == config
    assert to_dict(reloaded) == dataclasses.asdict(config)
    # The saved file is a valid config file too.
    assert load_config(path) == config


def test_from_dict_reads_run_directories_of_earlier_releases():
    data = to_dict(ExperimentConfig())
    data["model"]["speech"]["type"] = "crnn"
    assert from_dict(data).model.speech.type == "resnet_crnn_at"
    assert data["model"]["speech"]["type"] == "crnn"  # the caller's dict is left alone


# `model.speech` as earlier releases resolved it (one flat section for every
# backbone): what run directories' config.yaml and exports' metadata hold.
FLAT_SPEECH_DEFAULTS = {
    "type": "resnet_crnn_at", "stage_widths": [64, 128, 256, 512], "blocks_per_stage": 1,
    "gru_units": 256, "attention_units": 128, "transformer_heads": 8,
    "transformer_intermediate_dim": 1024, "transformer_layers": 1, "dropout": 0.3, "feature_dim": 512,
    "weights": "none", "conv_filters": 256, "mobilenet_alpha": 1.0,
    "whisper_source": "whisper-base-offline", "whisper_layers": 0, "whisper_trainable_layers": 0,
    "pooling": "attention", "normalize_pooled": False,
}
FLAT_WHISPER_RUN = {  # configs/ravdess/ser_whisper.yaml, resolved by an earlier release
    **FLAT_SPEECH_DEFAULTS, "type": "whisper", "whisper_layers": 4, "pooling": "mean_std",
    "normalize_pooled": True, "feature_dim": 256,
}


def flat_config(speech: dict) -> dict:
    data = to_dict(ExperimentConfig())
    data["model"]["speech"] = dict(speech)
    return data


def test_from_dict_reads_the_flat_speech_section_of_earlier_releases():
    # The flat defaults were the section defaults: an old resolved config is today's default.
    assert from_dict(flat_config(FLAT_SPEECH_DEFAULTS)) == ExperimentConfig()
    data = flat_config(FLAT_WHISPER_RUN)
    speech = from_dict(data).model.speech
    assert speech.type == "whisper"
    assert speech.whisper == WhisperConfig(layers=4, pooling="mean_std", normalize_pooled=True, feature_dim=256)
    assert speech.mobilenet.feature_dim == 256  # a flat key went to every section that has it
    assert data["model"]["speech"] == FLAT_WHISPER_RUN  # the caller's dict is left alone
    recipe = load_config(RECIPES / "ravdess" / "ser_whisper.yaml")
    assert recipe.model.speech.whisper == speech.whisper


def test_resume_compares_a_flat_config_yaml_with_todays_form(tmp_path):
    from bimer_tf.training.run_dir import config_differences

    recipe = load_config(RECIPES / "ravdess" / "ser_whisper.yaml")
    data = to_dict(recipe)
    data["model"]["speech"] = dict(FLAT_WHISPER_RUN)
    saved = _write_yaml(tmp_path, data)
    # The flat feature_dim 256 reached every section; only the whisper one is compared.
    assert config_differences(recipe, saved) == []
    recipe.model.speech.whisper.layers = 5
    assert config_differences(recipe, saved) == ["model.speech.whisper.layers"]


def test_flat_speech_keys_in_set_and_yaml(tmp_path):
    flat = load_config(model="ser_whisper", overrides=["model.speech.whisper_layers=4"])
    assert flat == load_config(model="ser_whisper", overrides=["model.speech.whisper.layers=4"])
    assert flat.model.speech.whisper.layers == 4
    config = load_config(overrides=["model.speech.gru_units=128", "model.speech.dropout=0.1"])
    assert (config.model.speech.resnet_crnn_at.gru_units, config.model.speech.resnet50_crnn_at.gru_units) == (128, 128)
    assert {getattr(config.model.speech, name).dropout for name in
            ("resnet_crnn_at", "resnet50_crnn_at", "mobilenet", "whisper")} == {0.1}
    path = _write_yaml(tmp_path, {"model": {"speech": {"type": "mobilenet", "mobilenet_alpha": 0.25, "weights": "none"}},
                                  "audio": {"channels": 3}})
    assert load_config(path).model.speech.mobilenet.alpha == 0.25


@pytest.mark.parametrize(
    "flat, section",
    [("whisper_layers", "whisper.layers"), ("dropout", "mobilenet.dropout"), ("mobilenet_alpha", "mobilenet.alpha")],
)
def test_a_flat_key_with_its_section_form_is_an_error(tmp_path, flat, section):
    message = rf"'model\.speech\.{flat}' and 'model\.speech\.{section}' are both given"
    name, field = section.split(".")
    path = _write_yaml(tmp_path, {"model": {"speech": {flat: 1, name: {field: 1}}}})
    with pytest.raises(InputError, match=message):
        load_config(path)
    with pytest.raises(InputError, match=message):
        load_config(overrides=[f"model.speech.{flat}=1", f"model.speech.{section}=1"])
    with pytest.raises(InputError, match=message):
        from_dict({"model": {"speech": {flat: 1, name: {field: 1}}}})


def test_speech_types_are_the_section_names():
    assert SPEECH_TYPES == ("resnet_cnn", "resnet_crnn_at", "resnet50_crnn_at", "mobilenet", "whisper")
    assert [f.name for f in dataclasses.fields(SpeechModelConfig)] == ["type", *SPEECH_TYPES]
    for name in SPEECH_TYPES:
        speech = SpeechModelConfig(type=name)
        assert speech.selected() is getattr(speech, name)


def test_from_dict_validates():
    data = to_dict(ExperimentConfig())
    data["audio"]["channels"] = 4
    with pytest.raises(InputError, match="audio.channels"):
        from_dict(data)


# --- Command line -----------------------------------------------------------


def test_train_cli_rejects_unknown_key_with_exit_2():
    result = subprocess.run(
        [sys.executable, "train.py", "--set", "nonsense.key=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "error: unknown config key 'nonsense'" in result.stderr
    assert "Traceback" not in result.stderr

"""Predict the emotion of one utterance with an exported model.

    python -m bimer_tf.predict --model export/bimer/1 --audio X.wav --text "..."

Prints JSON: {"label": ..., "probabilities": {label: p, ...}}. The audio is
checked before it reaches the graph, so a bad file gets a message naming the
problem and the fix (exit code 2) instead of an op error.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bimer_tf.cli import run_main
from bimer_tf.errors import InputError


def read_text(text: str | None, text_file: str | None) -> str:
    """The transcript from --text or --text-file, as checked UTF-8."""
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"text file not found: {path}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"{path} is not UTF-8 (invalid byte at offset {error.start}); "
                "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
            ) from None
    if text is None:
        raise InputError("no transcript: pass --text \"...\" or --text-file FILE")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            "--text holds bytes that are not valid UTF-8; set a UTF-8 locale or use --text-file"
        ) from None
    if not text.strip():
        raise InputError("the transcript is empty; pass the words spoken with --text")
    return text


def predict(model_dir: str | Path, audio: str | Path, text: str) -> dict:
    """Checks the inputs, then runs the exported model on them."""
    from bimer_tf.data.wav import check_wav

    audio_config = _audio_config(model_dir)
    # Checked before TensorFlow loads: bad input fails fast with a clear message.
    info = check_wav(audio, audio_config["sample_rate"], audio_config["silence_floor_dbfs"])

    import tensorflow as tf

    from bimer_tf.serving import load_saved_model

    serve, labels = load_saved_model(model_dir)
    result = serve(
        audio_wav=tf.constant([Path(audio).read_bytes()]), text=tf.constant([text.encode("utf-8")])
    )
    probabilities = result["probabilities"].numpy()[0]
    labels = labels or [str(i) for i in range(len(probabilities))]
    output = {
        "label": result["label"].numpy()[0].decode("utf-8"),
        "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probabilities)},
    }
    if info.duration_s > audio_config["max_duration_s"]:
        output["note"] = (
            f"audio is {info.duration_s:.1f} s; the model used its first "
            f"{audio_config['max_duration_s']:g} s after trimming silence"
        )
    return output


def _audio_config(model_dir) -> dict:
    from bimer_tf.config import AudioConfig
    from bimer_tf.serving import METADATA_FILE

    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise InputError(
            f"{model_dir} is not a SavedModel version folder (no saved_model.pb); "
            "pass e.g. export/bimer/1, written by `python export.py`"
        )
    metadata = model_dir / METADATA_FILE
    defaults = vars(AudioConfig())
    if metadata.is_file():
        return {**defaults, **json.loads(metadata.read_text(encoding="utf-8"))["config"]["audio"]}
    return defaults


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="SavedModel version folder, e.g. export/bimer/1")
    parser.add_argument("--audio", required=True, help="16 kHz 16-bit PCM WAV file")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", help="the transcript")
    group.add_argument("--text-file", help="a UTF-8 file holding the transcript")
    args = parser.parse_args(argv)
    text = read_text(args.text, args.text_file)
    print(json.dumps(predict(args.model, args.audio, text), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))

"""Predict the emotion of one utterance with an exported model.

    python -m bimer_tf.predict --model export/bimer/1 --audio X.wav --text "..."

Prints JSON: {"label": ..., "probabilities": {label: p, ...}}. The model's
signature says which inputs it takes: `--audio` and `--text` for bimodal
models, `--audio` alone for speech-only models, `--text` alone for text-only
models. The audio is checked before it reaches the graph, so a bad file gets a
message naming the problem and the fix (exit code 2) instead of an op error.
"""

from __future__ import annotations

from bimer_tf.quiet import quiet_startup

quiet_startup()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.errors import InputError, op_error_message  # noqa: E402

AUDIO_INPUT, TEXT_INPUT = "audio_wav", "text"
MISSING = {
    AUDIO_INPUT: "no audio: pass --audio FILE.wav",
    TEXT_INPUT: 'no transcript: pass --text "..." or --text-file FILE',
}


def read_text(text: str | None, text_file: str | None) -> str | None:
    """The transcript from --text or --text-file as checked UTF-8; None when neither is given."""
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
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            "--text holds bytes that are not valid UTF-8; set a UTF-8 locale or use --text-file"
        ) from None
    if not text.strip():
        raise InputError("the transcript is empty; pass the words spoken with --text")
    return text


def model_inputs(serve) -> tuple[str, ...]:
    """The input names of a serving signature, e.g. ('audio_wav', 'text')."""
    return tuple(sorted(serve.structured_input_signature[1]))


def predict(model_dir: str | Path, audio: str | Path | None = None, text: str | None = None) -> dict:
    """Checks the inputs, then runs the exported model on the ones it takes.

    Raises InputError when the model needs an input that was not given, or
    when the graph rejects an input (the op's own reason, first line only).
    A given input the model does not take is left out with a note on stderr.
    """
    from bimer_tf.data.wav import check_wav

    audio_config = _audio_config(model_dir)
    info = None
    if audio is not None:
        # Checked before TensorFlow loads: bad input fails fast with a clear message.
        info = check_wav(audio, audio_config["sample_rate"], audio_config["silence_floor_dbfs"])

    import tensorflow as tf

    from bimer_tf.serving import load_saved_model

    serve, labels = load_saved_model(model_dir)
    takes = model_inputs(serve)
    given = {AUDIO_INPUT: audio, TEXT_INPUT: text}
    missing = [name for name in takes if given.get(name) is None]
    if missing:
        reasons = "; ".join(MISSING.get(name, f"no '{name}' input") for name in missing)
        raise InputError(f"{reasons} (the model {model_dir} takes {' and '.join(takes)})")
    for name, value in given.items():
        if value is not None and name not in takes:
            option = "--audio" if name == AUDIO_INPUT else "--text"
            print(f"note: {model_dir} takes only {', '.join(takes)}; {option} is not used", file=sys.stderr)
    feeds = {}
    if AUDIO_INPUT in takes:
        feeds[AUDIO_INPUT] = tf.constant([Path(audio).read_bytes()])
    if TEXT_INPUT in takes:
        feeds[TEXT_INPUT] = tf.constant([text.encode("utf-8")])
    try:
        result = serve(**feeds)
    except tf.errors.OpError as error:
        raise InputError(f"the model rejected the input: {op_error_message(error)}") from None
    probabilities = result["probabilities"].numpy()[0]
    labels = labels or [str(i) for i in range(len(probabilities))]
    output = {
        "label": result["label"].numpy()[0].decode("utf-8"),
        "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probabilities)},
    }
    if info is not None and AUDIO_INPUT in takes and info.duration_s > audio_config["max_duration_s"]:
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
        config = json.loads(metadata.read_text(encoding="utf-8")).get("config", {})
        return {**defaults, **(config.get("audio") or {})}
    return defaults


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.predict", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="SavedModel version folder, e.g. export/bimer/1")
    parser.add_argument(
        "--audio", help="16 kHz 16-bit PCM WAV file (needed by speech and bimodal models)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--text", help="the transcript (needed by text and bimodal models)")
    group.add_argument("--text-file", help="a UTF-8 file holding the transcript")
    args = parser.parse_args(argv)
    if args.audio is None and args.text is None and args.text_file is None:
        parser.error("give the model's inputs: --audio FILE.wav and/or --text \"...\"")
    text = read_text(args.text, args.text_file)
    print(json.dumps(predict(args.model, args.audio, text), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))

"""`python -m bimer_tf.predict --inputs/--manifest`: many files, one row each."""

import csv
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile

from conftest import FAKE_LABELS, TINY_LABELS, TINY_TEXTS, one_modality_export, predict_cli, synth_tone

ROW_FIELDS = ["input", "label", "probabilities", "error"]


def run(*args) -> int:
    """The command in this process, as `python -m bimer_tf.predict` runs it (exit code)."""
    from bimer_tf.cli import run_main
    from bimer_tf.inference.predict import main

    return run_main(main, [str(arg) for arg in args])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def speech_export(tmp_path_factory):
    return one_modality_export(tmp_path_factory.mktemp("ser") / "1", "audio_wav")


@pytest.fixture(scope="module")
def text_export(tmp_path_factory):
    return one_modality_export(tmp_path_factory.mktemp("ter") / "1", "text")


@pytest.fixture
def collection(tmp_path):
    """A folder of clips with transcripts beside them, good and bad; returns (folder, expected errors)."""
    from imageio_ffmpeg import get_ffmpeg_exe

    folder = tmp_path / "clips"
    folder.mkdir()
    good = {
        "a_happy.wav": (synth_tone(0.8, freq=300.0, lead_silence=0.1), 16000, "happy"),
        "b_sad.flac": (synth_tone(0.9, freq=150.0), 16000, "sad"),
        "c_angry.wav": (synth_tone(0.7, freq=450.0, sample_rate=44100), 44100, "angry"),
    }
    for name, (samples, rate, label) in good.items():
        soundfile.write(folder / name, samples, rate, subtype="PCM_16")
        (folder / name).with_suffix(".txt").write_text(TINY_TEXTS[label], encoding="utf-8")
    subprocess.run(
        [get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(folder / "a_happy.wav"), str(folder / "d_happy.mp3")],
        check=True,
    )
    (folder / "d_happy.txt").write_text(TINY_TEXTS["happy"], encoding="utf-8")
    (folder / "e_junk.mp3").write_bytes(b"not audio at all\n" * 40)
    soundfile.write(folder / "f_silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    soundfile.write(folder / "g_short.wav", synth_tone(0.02), 16000, subtype="PCM_16")
    soundfile.write(folder / "h_untranscribed.wav", synth_tone(0.8), 16000, subtype="PCM_16")
    for name in ("e_junk", "f_silent", "g_short"):
        (folder / f"{name}.txt").write_text("hello", encoding="utf-8")
    (folder / "notes.md").write_text("not an audio file: a folder search skips it")
    errors = {
        "e_junk.mp3": "cannot decode",
        "f_silent.wav": "is silent",
        "g_short.wav": "is too short",
        "h_untranscribed.wav": "no transcript for",
    }
    return folder, errors


def test_a_folder_to_json_lines(tiny_export, collection, tmp_path):
    from bimer_tf.inference.predict import predict

    folder, errors = collection
    output = tmp_path / "out" / "predictions.jsonl"
    done = predict_cli("--model", tiny_export, "--inputs", folder, "--output", output, "--batch-size", 2)
    assert done.returncode == 0, done.stderr
    assert "note: --model is now --saved-model" in done.stderr
    assert "8 inputs: 4 predicted, 4 skipped" in done.stderr and str(output) in done.stderr
    rows = read_jsonl(output)
    assert [list(row) for row in rows] == [ROW_FIELDS] * 8
    assert [row["input"] for row in rows] == sorted(str(p) for p in folder.iterdir() if p.suffix in (".wav", ".flac", ".mp3"))
    by_name = {os.path.basename(row["input"]): row for row in rows}
    for name, message in errors.items():
        row = by_name[name]
        assert row["label"] is None and row["probabilities"] is None and message in row["error"], row
        assert name in row["error"]
    predicted = [row for row in rows if row["error"] is None]
    assert len(predicted) == 4
    for row in predicted:
        assert list(row["probabilities"]) == TINY_LABELS
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    # what single mode says about the same files
    for row in predicted[:2]:
        transcript = open(os.path.splitext(row["input"])[0] + ".txt", encoding="utf-8").read()
        single = predict(tiny_export, row["input"], transcript)
        assert single["label"] == row["label"] and list(single["probabilities"]) == TINY_LABELS
        np.testing.assert_allclose(  # batches of two against batches of one: the last digit may differ
            list(single["probabilities"].values()), list(row["probabilities"].values()), atol=2e-6
        )
    # the MP3 of a clip gives what the clip gives
    mp3, wav = by_name["d_happy.mp3"], by_name["a_happy.wav"]
    assert mp3["label"] == wav["label"]
    # MP3 is lossy: the codec moves the spectrum a little
    np.testing.assert_allclose(list(mp3["probabilities"].values()), list(wav["probabilities"].values()), atol=0.02)


def test_a_manifest_to_csv_then_resume(tiny_export, tiny_corpus, tmp_path, capsys):
    from bimer_tf.data.manifest import read_manifest

    manifest_rows = read_manifest(tiny_corpus)
    output = tmp_path / "predictions.csv"
    assert run("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", output, "--batch-size", 8) == 0
    err = capsys.readouterr().err
    assert f"{len(manifest_rows)} inputs: {len(manifest_rows) - 2} predicted, 2 skipped" in err
    with output.open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["input", "label", *TINY_LABELS, "error"]
    rows = {row[0]: row for row in table[1:]}
    assert list(rows) == [row["id"] for row in manifest_rows]
    assert "cannot decode" in rows["bad_corrupt"][-1] and rows["bad_corrupt"][1:-1] == [""] * 5
    assert rows["bad_text"][-1].startswith("no transcript")
    assert rows["bad_label"][-1] == ""  # its label is not the model's business here
    good = rows[manifest_rows[0]["id"]]
    probabilities = [float(p) for p in good[2:-1]]
    assert good[1] == TINY_LABELS[int(np.argmax(probabilities))] and sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    complete = output.read_text()

    # An interrupted run: ten rows written, the eleventh cut short.
    lines = complete.splitlines(keepends=True)
    output.write_text("".join(lines[:11]) + lines[11][:7])
    assert run("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", output, "--resume") == 0
    err = capsys.readouterr().err
    assert f"{len(manifest_rows) - 10} inputs: {len(manifest_rows) - 12} predicted, 2 skipped (10 more were already" in err
    with output.open(newline="") as handle:
        resumed = list(csv.reader(handle))
    assert [row[:2] + row[-1:] for row in resumed] == [row[:2] + row[-1:] for row in table]
    for got, expected in zip(resumed[1:], table[1:]):
        np.testing.assert_allclose([float(p or "nan") for p in got[2:-1]], [float(p or "nan") for p in expected[2:-1]], atol=2e-6)
    # nothing left: the model is not even loaded
    assert run("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", output, "--resume") == 0
    assert "nothing to do" in capsys.readouterr().err
    # without --resume an existing output is never overwritten
    assert run("--saved-model", tiny_export, "--manifest", tiny_corpus, "--output", output) == 2
    assert "exists; pass --resume" in capsys.readouterr().err


def test_resume_skips_json_lines_rows_already_written(speech_export, tmp_path, capsys):
    for i in range(5):
        soundfile.write(tmp_path / f"clip{i}.wav", synth_tone(0.3 + 0.1 * i), 16000, subtype="PCM_16")
    output = tmp_path / "out.jsonl"
    pattern = str(tmp_path / "clip[0-2].wav")
    assert run("--saved-model", speech_export, "--inputs", pattern, "--output", output) == 0
    first = read_jsonl(output)
    assert [os.path.basename(r["input"]) for r in first] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    capsys.readouterr()
    assert run("--saved-model", speech_export, "--inputs", tmp_path, "--output", output, "--resume") == 0
    assert "2 inputs: 2 predicted, 0 skipped (3 more were already in the output" in capsys.readouterr().err
    rows = read_jsonl(output)
    assert rows[:3] == first and len(rows) == 5 and len({r["input"] for r in rows}) == 5


def test_a_text_model_reads_a_manifest_but_not_audio_files(text_export, tmp_path, capsys):
    from bimer_tf.data.manifest import make_row, write_manifest

    manifest = write_manifest(
        [
            make_row("t1", "happy", text="what a great day", corpus="x"),
            make_row("t2", "sad", text="boom", corpus="x"),
            make_row("t3", "sad", text="   ", corpus="x"),
        ],
        tmp_path / "manifest.jsonl",
    )
    assert run("--saved-model", text_export, "--manifest", manifest) == 0  # JSON Lines on stdout
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["input"] for row in rows] == ["t1", "t2", "t3"]
    assert list(rows[0]["probabilities"]) == FAKE_LABELS and rows[0]["error"] is None
    assert rows[1]["error"] == "the model rejected the input: text: the input boom is refused"
    assert rows[2]["error"].startswith("no transcript (text is empty or null)")
    assert "3 inputs: 1 predicted, 2 skipped" in captured.err
    soundfile.write(tmp_path / "a.wav", synth_tone(0.5), 16000, subtype="PCM_16")
    assert run("--saved-model", text_export, "--inputs", tmp_path, "--output", tmp_path / "o.jsonl") == 2
    assert "takes only text, and --inputs gives audio files" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_nothing_predicted_exits_2_with_every_row_written(speech_export, tmp_path, capsys):
    (tmp_path / "x.wav").write_bytes(b"")
    soundfile.write(tmp_path / "y.wav", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    output = tmp_path / "out.jsonl"
    assert run("--saved-model", speech_export, "--inputs", tmp_path / "x.wav", tmp_path / "y.wav", "--output", output) == 2
    err = capsys.readouterr().err
    assert "2 inputs: 0 predicted, 2 skipped" in err and "none of the 2 inputs could be predicted" in err
    assert [row["error"] is not None for row in read_jsonl(output)] == [True, True]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--inputs", "{tmp}", "--audio", "{tmp}/a.wav"], "use one or the other"),
        (["--audio", "{tmp}/a.wav", "--output", "{tmp}/o.jsonl"], "--output and --resume go with --inputs"),
        (["--inputs", "{tmp}", "--resume"], "--resume needs --output"),
        (["--inputs", "{tmp}", "--output", "{tmp}/o.txt"], "name a .jsonl or .csv file"),
        (["--inputs", "{tmp}", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--inputs", "{tmp}/nothing/*.wav"], "the pattern matches no file"),
        (["--inputs", "{tmp}/absent"], "no such folder or file"),
        (["--manifest", "{tmp}/absent.jsonl"], "manifest not found"),
    ],
)
def test_bad_batch_arguments_exit_2(speech_export, tmp_path, capsys, args, message):
    soundfile.write(tmp_path / "a.wav", synth_tone(0.5), 16000, subtype="PCM_16")
    args = [arg.format(tmp=tmp_path) for arg in args]
    try:
        code = run("--saved-model", speech_export, *args)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err

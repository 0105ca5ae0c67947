"""`python -m bimer_tf.beam.shard`: shards that round-trip, dead letters that add up,
augmented copies equal to `python -m bimer_tf.data.augment`'s, any worker count."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT, synth_tone

pytest.importorskip("apache_beam", reason="the beam extra is not installed")

from bimer_tf.audio.wav import load_audio  # noqa: E402
from bimer_tf.cli import run_main  # noqa: E402
from bimer_tf.data import shards  # noqa: E402
from bimer_tf.data.augment_audio import AugmentSettings, augment_manifest  # noqa: E402
from bimer_tf.data.manifest import Fold, make_row, read_manifest, write_manifest, write_splits  # noqa: E402

IN_PROCESS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
METHODS = "speed,rir,noise,pitch"
COPIES = 5  # speed (two factors), rir, noise, pitch
SEED = 5
BAD = {"corrupt": "unreadable audio", "missing": "audio file not found", "silent": "silent audio"}


def shard(*args, in_process=True) -> int:
    from bimer_tf.beam.shard import main

    return run_main(main, [str(arg) for arg in args] + (IN_PROCESS if in_process else []))


def dead_letters(out: Path) -> list[dict]:
    files = sorted(out.glob("dead_letter*.jsonl"))
    assert files, "no dead-letter file"
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four tones at 22.05 kHz (resampled on the way), four unusable rows; one fold."""
    root = tmp_path_factory.mktemp("beam_corpus")
    (root / "wav").mkdir()
    rows = []
    for index, (row_id, freq) in enumerate({"a": 180.0, "b": 220.0, "c": 260.0, "d": 300.0}.items()):
        path = root / "wav" / f"{row_id}.wav"
        soundfile.write(path, synth_tone(0.8, sample_rate=22050, freq=freq, amplitude=0.1), 22050, subtype="PCM_16")
        label = "sad" if index % 2 else "happy"
        rows.append(make_row(row_id, label, audio=str(path), text=f"text {row_id}", speaker=f"s{index}", session=index + 1, corpus="tones"))
    (root / "wav" / "corrupt.wav").write_bytes(b"RIFF not really a wav")
    soundfile.write(root / "wav" / "silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    rows += [
        make_row("corrupt", "sad", audio=str(root / "wav" / "corrupt.wav"), corpus="tones"),
        make_row("missing", "sad", audio=str(root / "wav" / "missing.wav"), corpus="tones"),
        make_row("silent", "sad", audio=str(root / "wav" / "silent.wav"), corpus="tones"),
        make_row("text-only", "sad", text="no audio here", corpus="tones"),
    ]
    manifest = write_manifest(rows, root / "manifest.jsonl")
    train = ["a", "b", "corrupt", "missing", "silent", "text-only"]
    splits = write_splits(rows, "tones", [Fold("f1", train, ["c"], ["d"])], root)
    return manifest, splits


@pytest.fixture(scope="module")
def augmented(corpus, tmp_path_factory):
    """The Beam shards of the fold with every method, and the augment tool's copies of its train split."""
    manifest, splits = corpus
    folder = tmp_path_factory.mktemp("beam_augmented")
    out = folder / "shards"
    assert shard("--manifest", manifest, "--splits", splits, "--methods", METHODS, "--seed", SEED, "--out", out) == 0
    single = folder / "single"
    augment_manifest(splits.parent / "f1" / "train.jsonl", single, settings=AugmentSettings(seed=SEED), workers=1, progress=False)
    return out, single


def test_shards_round_trip_and_equal_the_single_machine_shards(corpus, tmp_path):
    from bimer_tf.data.shard import shard_manifest

    manifest, splits = corpus
    out = tmp_path / "beam"
    assert shard("--manifest", manifest, "--splits", splits, "--out", out) == 0
    by_id = {row["id"]: row for row in read_manifest(manifest)}
    expected = {"train": {"a", "b", "text-only"}, "val": {"c"}, "test": {"d"}}
    for split, ids in expected.items():
        shards.verify_split(out, split)  # counts and rows_sha256 match the rows
        rows = {row["id"]: (row, samples) for row, samples in shards.read_split(out, split)}
        assert set(rows) == ids
        for row_id, (row, samples) in rows.items():
            source = by_id[row_id]
            for name in ("label", "text", "speaker", "session", "corpus", "origin", "augmentation"):
                assert row[name] == source[name], (row_id, name)
            if source["audio"] is None:
                assert samples is None
            else:
                np.testing.assert_array_equal(samples, shards.to_pcm16(load_audio(source["audio"], 16000)))
    # The single-machine command writes the same bytes.
    single = tmp_path / "single"
    shard_manifest(manifest, single, splits=splits, workers=1, progress=False)
    for path in sorted(single.glob("*.tfrecord")):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    letters = dead_letters(out)
    assert {letter["id"]: letter["reason"].split(":")[0] for letter in letters} == BAD


def test_dead_letters_have_id_and_reason_and_counts_add_up(augmented):
    out, _ = augmented
    letters = dead_letters(out)
    assert all(letter["id"] and letter["reason"] for letter in letters)
    expected = {}
    for row_id, kind in BAD.items():
        expected[row_id] = kind
        for suffix in ("speed0.75", "speed1.25", "rir", "noise", "pitch"):
            expected[f"{row_id}-{suffix}"] = kind  # no copies of a recording that cannot be read
    assert {letter["id"]: letter["reason"].split(":")[0] for letter in letters} == expected
    report = json.loads((out / shards.REPORT_NAME).read_text())
    train = report["splits"]["train"]
    assert (train["read"], train["copies_planned"]) == (6, 5 * COPIES)  # the text-only row gets no copies
    assert (train["written"], train["skipped"], train["written_copies"]) == (3 + 2 * COPIES, 3 * (1 + COPIES), 2 * COPIES)
    for counts in report["splits"].values():
        assert counts["written"] + counts["skipped"] == counts["read"] + counts["copies_planned"]
    for split in ("val", "test"):
        assert (report["splits"][split]["copies_planned"], report["splits"][split]["written"]) == (0, 1)
    assert shards.read_index(out, "train")["rows"] == train["written"]


def test_augmented_copies_are_the_augment_tools_bytes(augmented):
    out, single = augmented
    shard_rows = {row["id"]: (row, samples) for row, samples in shards.read_split(out, "train")}
    copies = read_manifest(single / "manifest.jsonl")
    assert len(copies) == 2 * COPIES
    assert {row["id"] for row in copies} == {i for i, (r, _) in shard_rows.items() if r["augmentation"]}
    for copy in copies:
        row, samples = shard_rows[copy["id"]]
        for name in ("label", "text", "speaker", "session", "corpus", "origin", "augmentation"):
            assert row[name] == copy[name], (copy["id"], name)
        wav = io.BytesIO()
        soundfile.write(wav, samples, 16000, subtype="PCM_16", format="WAV")
        assert wav.getvalue() == Path(copy["audio"]).read_bytes(), copy["id"]


def test_an_unexpected_error_dead_letters_the_recording_and_its_copies(corpus, tmp_path, monkeypatch):
    import bimer_tf.beam.sharding as sharding

    real = sharding.load_recording

    def flaky(source, *args, **kwargs):
        if str(source).endswith("b.wav"):
            raise RuntimeError("decoder crashed")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(sharding, "load_recording", flaky)  # the in-process runner runs this process's module
    manifest, splits = corpus
    out = tmp_path / "out"
    assert shard("--manifest", manifest, "--splits", splits, "--methods", "speed", "--out", out) == 0
    crashed = {letter["id"]: letter["reason"] for letter in dead_letters(out) if letter["id"].startswith("b")}
    assert set(crashed) == {"b", "b-speed0.75", "b-speed1.25"}
    assert all(reason == "unexpected error: RuntimeError('decoder crashed')" for reason in crashed.values())
    train = json.loads((out / shards.REPORT_NAME).read_text())["splits"]["train"]
    assert train["written"] + train["skipped"] == train["read"] + train["copies_planned"] == 6 + 5 * 2


def test_two_worker_processes_write_the_same_shards(corpus, augmented, tmp_path):
    """The command as run, on the DirectRunner's default multi_processing mode."""
    manifest, splits = corpus
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "bimer_tf.beam.shard", "--manifest", str(manifest), "--splits", str(splits),
         "--methods", METHODS, "--seed", str(SEED), "--out", str(out), "--direct_num_workers", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train: read 6 rows + 25 copies planned = written 13 + dead-lettered 18" in done.stdout
    report = json.loads((out / shards.REPORT_NAME).read_text())
    assert report["beam"] == {"runner": "DirectRunner", "direct_running_mode": "multi_processing", "direct_num_workers": 2}
    one_worker, _ = augmented
    for split in ("train", "val", "test"):
        assert shards.read_index(out, split) == {**shards.read_index(one_worker, split)}
        for name in shards.shard_names(split, len(shards.read_index(out, split)["shards"])):
            assert (out / name).read_bytes() == (one_worker / name).read_bytes()
    assert sorted(l["id"] for l in dead_letters(out)) == sorted(l["id"] for l in dead_letters(one_worker))


def test_bad_options_exit_2_with_a_reason(corpus, tmp_path, capsys):
    manifest, splits = corpus
    assert shard("--manifest", manifest, "--out", tmp_path / "x", "--no_such_beam_option=1") == 2
    assert "unknown option --no_such_beam_option" in capsys.readouterr().err
    assert shard("--manifest", manifest, "--out", tmp_path / "x", "--methods", "speed") == 2
    assert "training split only" in capsys.readouterr().err
    assert shard("--manifest", manifest, "--splits", splits, "--out", tmp_path / "x", "--methods", "echo") == 2
    assert "choose from speed,rir,noise,pitch" in capsys.readouterr().err
    assert shard("--manifest", manifest, "--out", tmp_path / "x", "--fold", "f1") == 2


def test_a_training_manifest_without_splits_and_remote_paths(corpus, tmp_path, monkeypatch):
    """`--split train` augments a fold's train.jsonl; remote manifests resolve audio against their URL."""
    from bimer_tf.beam import files

    manifest, splits = corpus
    out = tmp_path / "out"
    assert shard("--manifest", splits.parent / "f1" / "train.jsonl", "--split", "train", "--methods", "pitch", "--out", out) == 0
    assert shards.read_index(out, "train")["rows"] == 3 + 2
    assert not (out / "all.index.json").exists()

    assert files.resolve("gs://bucket/data/f1", "../../wav/a.wav") == "gs://bucket/wav/a.wav"
    assert files.resolve("gs://bucket/data", "s3://other/a.wav") == "s3://other/a.wav"
    store = {
        "mem://bucket/c/manifest.jsonl": manifest.read_bytes(),
        "mem://bucket/c/splits.json": splits.read_bytes(),
        "mem://bucket/c/f1/train.jsonl": (splits.parent / "f1" / "train.jsonl").read_bytes(),
    }
    monkeypatch.setattr(files, "exists", lambda path: path in store)
    monkeypatch.setattr(files, "read_bytes", lambda path: store[path])
    rows = files.read_manifest_rows("mem://bucket/c/manifest.jsonl")
    assert rows[0]["audio"] == "mem://bucket/c/wav/a.wav"
    protocol, fold, split_rows = files.read_fold("mem://bucket/c/manifest.jsonl", "mem://bucket/c/splits.json", None)
    assert (protocol, fold) == ("tones", "f1")
    assert [row["audio"] for row in split_rows["val"]] == ["mem://bucket/c/wav/c.wav"]
    assert split_rows["train"][-1]["audio"] is None


def test_the_worker_requirements_agree_with_setup_cfg():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    declared = {
        line.strip()
        for text in (config["options"]["install_requires"], config["options.extras_require"]["beam"])
        for line in text.splitlines()
        if line.strip()
    }
    listed = [
        line.strip()
        for line in (REPO_ROOT / "bimer_tf/beam/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert listed and not [line for line in listed if line not in declared]

"""Offline augmentation: every method's effect, determinism, resume, bad rows, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile
from conftest import synth_tone

from bimer_tf.cli import run_main
from bimer_tf.data.augment_audio import (
    METHODS,
    AugmentSettings,
    PlannedClip,
    augment_manifest,
    augment_waveform,
    main,
    pitch_shift_semitones,
)
from bimer_tf.data.manifest import make_row, read_manifest, write_manifest
from bimer_tf.errors import InputError

RATE = 16000
TONES = {"a": 180.0, "b": 220.0, "c": 260.0}  # recording id -> fundamental (Hz)


def _write(path, samples, rate=RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16", format="WAV")
    return path


def _make_corpus(folder, bad_rows=False):
    """Three 1 s harmonic tones (two labels), optionally with unusable rows."""
    rows = []
    for index, (row_id, freq) in enumerate(TONES.items()):
        audio = _write(folder / "wav" / f"{row_id}.wav", synth_tone(1.0, freq=freq, amplitude=0.1))
        rows.append(
            make_row(
                row_id,
                "sad" if index % 2 else "happy",
                audio=str(audio),
                text=f"text {row_id}",
                speaker=f"spk{index}",
                session=index + 1,
                corpus="tones",
            )
        )
    if bad_rows:
        (folder / "wav" / "corrupt.wav").write_bytes(b"RIFF not really a wav")
        silent = _write(folder / "wav" / "silent.wav", np.zeros(RATE, np.float32))
        rows += [
            make_row("corrupt", "sad", audio=str(folder / "wav" / "corrupt.wav"), corpus="tones"),
            make_row("missing", "sad", audio=str(folder / "wav" / "missing.wav"), corpus="tones"),
            make_row("silent", "sad", audio=str(silent), corpus="tones"),
            make_row("text-only", "sad", text="no audio here", corpus="tones"),
            make_row(
                "a-noise",
                "happy",
                audio=rows[0]["audio"],
                corpus="tones",
                origin="a",
                augmentation="noise",
            ),
        ]
    return write_manifest(rows, folder / "manifest.jsonl")


def _f0(samples):
    """Fundamental of a generated tone (its strongest partial): the spectral peak, 0.25 Hz bins."""
    size = 4 * RATE
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n=size))
    freqs = np.fft.rfftfreq(size, 1 / RATE)
    band = (freqs > 50) & (freqs < 1000)
    return float(freqs[band][np.argmax(spectrum[band])])


def _snr_db(clean, noisy):
    return 20 * np.log10(np.sqrt(np.mean(clean**2)) / np.sqrt(np.mean((noisy - clean) ** 2)))


def _read(path):
    samples, rate = soundfile.read(path, dtype="float32")
    return samples, rate


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
    """One run of every method (workers=1): (manifest, out folder, report)."""
    folder = tmp_path_factory.mktemp("corpus")
    manifest = _make_corpus(folder)
    out = folder / "aug"
    report = augment_manifest(
        manifest, out, settings=AugmentSettings(seed=7), workers=1, progress=False
    )
    return manifest, out, report


def test_every_method_writes_16k_mono_pcm16_rows_with_origin(augmented):
    manifest, out, report = augmented
    rows = read_manifest(out / "manifest.jsonl")
    assert report["clips"] == {"planned": 15, "written": 15, "reused": 0, "failed": 0}
    assert {m: c["written"] for m, c in report["per_method"].items()} == {
        "speed": 6,
        "rir": 3,
        "noise": 3,
        "pitch": 3,
    }
    assert [r["id"] for r in rows[:5]] == [
        "a-speed0.75",
        "a-speed1.25",
        "a-rir",
        "a-noise",
        "a-pitch",
    ]
    originals = {r["id"]: r for r in read_manifest(manifest)}
    for row in rows:
        info = soundfile.info(row["audio"])
        assert (info.samplerate, info.channels, info.subtype, info.format) == (
            RATE,
            1,
            "PCM_16",
            "WAV",
        )
        assert row["augmentation"] in METHODS and row["origin"] in originals
        original = originals[row["origin"]]
        for field in ("label", "text", "speaker", "session", "corpus"):
            assert row[field] == original[field]


def test_speed_stretches_duration_and_keeps_pitch(augmented):
    _, out, _ = augmented
    for row_id, freq in TONES.items():
        original, _ = _read(out.parent / "wav" / f"{row_id}.wav")
        for factor in (0.75, 1.25):
            slowed, _ = _read(out / "speed" / f"{row_id}-speed{factor:g}.wav")
            assert len(slowed) / len(original) == pytest.approx(1 / factor, rel=0.01)
            assert _f0(slowed) == pytest.approx(freq, rel=0.02)


def test_pitch_shift_moves_f0_by_the_drawn_semitones(augmented):
    _, out, _ = augmented
    settings = AugmentSettings(seed=7)
    for row_id, freq in TONES.items():
        shifted, _ = _read(out / "pitch" / f"{row_id}-pitch.wav")
        drawn = pitch_shift_semitones(f"{row_id}-pitch", settings)
        measured = 12 * np.log2(_f0(shifted) / freq)
        assert 1.0 <= abs(drawn) <= 2.0
        assert measured == pytest.approx(drawn, abs=0.3)
        assert len(shifted) == RATE
    # Both directions occur over many clips; the seed fixes which clip gets which.
    draws = [pitch_shift_semitones(f"x{i}-pitch", settings) for i in range(50)]
    assert min(draws) < -1.0 and max(draws) > 1.0 and min(abs(d) for d in draws) >= 1.0


def test_generated_noise_snr_within_range(augmented):
    _, out, report = augmented
    low, high = report["settings"]["snr_db"]
    for row_id in TONES:
        clean, _ = _read(out.parent / "wav" / f"{row_id}.wav")
        noisy, _ = _read(out / "noise" / f"{row_id}-noise.wav")
        assert low - 0.5 <= _snr_db(clean, noisy) <= high + 0.5


def test_simulated_room_changes_signal_keeps_length_and_level(augmented):
    _, out, _ = augmented
    for row_id in TONES:
        dry, _ = _read(out.parent / "wav" / f"{row_id}.wav")
        wet, _ = _read(out / "rir" / f"{row_id}-rir.wav")
        assert len(wet) == len(dry)
        assert np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(dry)), rel=0.01)
        assert np.sqrt(np.mean((wet - dry) ** 2)) > 0.1 * np.sqrt(np.mean(dry**2))
        assert abs(np.corrcoef(wet, dry)[0, 1]) < 0.99  # not merely a scaled copy


@pytest.mark.filterwarnings("ignore:.*had to be resampled")  # the 8 kHz noise file, on purpose
def test_rir_and_noise_folders(tmp_path):
    manifest = _make_corpus(tmp_path / "corpus")
    rng = np.random.default_rng(0)
    decay = np.exp(-np.arange(4000) / 800.0)
    impulse = (rng.standard_normal(4000) * decay).astype(np.float32)
    impulse[0] = 1.0
    _write(tmp_path / "rirs" / "room1.wav", 0.5 * impulse / np.abs(impulse).max())
    _write(
        tmp_path / "noises" / "hum" / "white.wav",
        0.2 * rng.standard_normal(RATE // 2).astype(np.float32),
    )
    _write(
        tmp_path / "noises" / "noise8k.wav",
        0.2 * rng.standard_normal(8000).astype(np.float32),
        rate=8000,
    )
    settings = AugmentSettings(
        rir_dir=str(tmp_path / "rirs"), noise_dir=str(tmp_path / "noises"), snr_db=(8.0, 12.0)
    )
    report = augment_manifest(
        manifest, tmp_path / "aug", ["rir", "noise"], settings=settings, workers=1, progress=False
    )
    assert report["clips"]["written"] == 6
    for row_id in TONES:
        clean, _ = _read(tmp_path / "corpus" / "wav" / f"{row_id}.wav")
        noisy, _ = _read(tmp_path / "aug" / "noise" / f"{row_id}-noise.wav")
        wet, _ = _read(tmp_path / "aug" / "rir" / f"{row_id}-rir.wav")
        assert 7.5 <= _snr_db(clean, noisy) <= 12.5
        assert len(wet) == len(clean)
        assert not np.allclose(wet, clean, atol=1e-2)
        # The same tone, reverberated: the room may favour another harmonic.
        harmonic = _f0(wet) / TONES[row_id]
        assert round(harmonic) in range(1, 6) and harmonic == pytest.approx(
            round(harmonic), abs=0.02
        )


def test_same_seed_same_bytes_for_any_worker_count(tmp_path, augmented):
    manifest, first, _ = augmented
    augment_manifest(
        manifest, tmp_path / "two", settings=AugmentSettings(seed=7), workers=2, progress=False
    )
    assert _files(tmp_path / "two") == _files(first)
    augment_manifest(
        manifest, tmp_path / "other", settings=AugmentSettings(seed=8), workers=1, progress=False
    )
    other, reference = _files(tmp_path / "other"), _files(first)
    changed = {name.parent.name for name, data in other.items() if data != reference[name]}
    assert changed == {"rir", "noise", "pitch"}  # time stretching draws nothing


def test_rerun_reuses_finished_clips_and_redoes_missing_ones(tmp_path):
    manifest = _make_corpus(tmp_path / "corpus")
    out = tmp_path / "aug"
    augment_manifest(manifest, out, ["speed", "noise"], workers=1, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = augment_manifest(manifest, out, ["speed", "noise"], workers=1, progress=False)
    assert again["clips"] == {"planned": 9, "written": 0, "reused": 9, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    (out / "noise" / "b-noise.wav").unlink()
    third = augment_manifest(manifest, out, ["speed", "noise"], workers=1, progress=False)
    assert (third["clips"]["written"], third["clips"]["reused"]) == (1, 8)
    assert len(read_manifest(out / "manifest.jsonl")) == 9
    with pytest.raises(InputError, match="other settings"):
        augment_manifest(
            manifest, out, ["noise"], settings=AugmentSettings(seed=1), workers=1, progress=False
        )


def test_bad_rows_are_reported_and_counts_add_up(tmp_path):
    manifest = _make_corpus(tmp_path / "corpus", bad_rows=True)
    report = augment_manifest(
        manifest, tmp_path / "aug", ["noise", "pitch"], workers=1, progress=False
    )
    rows = report["rows"]
    assert rows["seen"] == 8 and rows["augmented"] == 3
    assert rows["augmented"] + rows["skipped"] == rows["seen"]
    assert rows["skipped_reasons"] == {
        "audio file not found": 1,
        "text-only row (no audio)": 1,
        "already an augmented copy": 1,
        "unreadable audio": 1,
        "silent audio": 1,
    }
    clips = report["clips"]
    assert clips["planned"] == clips["written"] + clips["reused"] + clips["failed"] == 6
    saved = json.loads((tmp_path / "aug" / "augment_report.json").read_text())
    assert {r["id"] for r in saved["skipped_rows"]} == {
        "corrupt",
        "missing",
        "silent",
        "text-only",
        "a-noise",
    }


def test_classes_limit_the_rows(tmp_path):
    manifest = _make_corpus(tmp_path / "corpus")
    report = augment_manifest(
        manifest, tmp_path / "aug", ["pitch"], classes=["sad"], workers=1, progress=False
    )
    assert [r["id"] for r in read_manifest(tmp_path / "aug" / "manifest.jsonl")] == ["b-pitch"]
    assert report["rows"]["skipped_reasons"] == {"label not in --classes": 2}
    with pytest.raises(InputError, match="angry"):
        augment_manifest(manifest, tmp_path / "aug2", classes=["angry"], workers=1, progress=False)


def test_waveform_function_is_deterministic_per_clip_id():
    samples = synth_tone(0.5, freq=200.0, amplitude=0.1)
    settings = AugmentSettings(seed=3)
    clip = PlannedClip("x-noise", "noise", "unused.wav")
    first = augment_waveform(samples, clip, settings)
    augment_waveform(samples, replace(clip, id="y-noise"), settings)  # moves the global RNGs
    assert np.array_equal(augment_waveform(samples, clip, settings), first)


def test_cli_writes_outputs_and_exits_2_on_bad_input(tmp_path, capsys):
    manifest = _make_corpus(tmp_path / "corpus")
    out = tmp_path / "aug"
    args = [
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--methods",
        "speed",
        "--workers",
        "1",
        "--no-progress",
    ]
    assert run_main(main, args) == 0
    assert "6 written" in capsys.readouterr().out
    assert (out / "augment_report.json").is_file()
    bad = [
        ["--methods", "speed,echo"],
        ["--snr-db", "20,5"],
        ["--snr-db", "loud"],
        ["--pitch-semitones", "0,2"],
        ["--speed-factors", "1.0"],
        ["--noise-dir", str(tmp_path / "nowhere")],
        ["--rt60", "0.05,0.3"],
    ]
    for extra in bad:
        assert (
            run_main(main, ["--manifest", str(manifest), "--out", str(tmp_path / "x")] + extra) == 2
        )
    assert run_main(main, ["--manifest", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err

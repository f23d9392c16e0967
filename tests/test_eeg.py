"""EEG preprocessing (preprocessing.eeg), trial readers (training.trials) and synthetic EEG.

Every file is written by the test in its real format: MATLAB files with scipy.io.savemat (and a
v7.3 one with h5py), EDF and BDF with mne.export.export_raw, DEAP's pickles with pickle.
"""

from __future__ import annotations

import csv
import json
import pickle
import struct
from pathlib import Path

import h5py
import mne
import numpy as np
import pytest
import scipy.io

from preprocessing.eeg import (
    ChannelStats,
    EEGPreprocessing,
    EEGRecording,
    EEGSpec,
    channel_stats,
    eeg_windows,
    filter_eeg,
    nonstandard_channels,
    read_eeg,
    resample_eeg,
    standardise,
)
from preprocessing.errors import RecordingError
from preprocessing.trial import read_trial_manifest
from training.synthetic_eeg import CHANNELS_14, SyntheticEEGSpec, synthetic_trial_eeg
from training.trials import (
    DEAP_CHANNELS,
    PAPER_SUBJECTS,
    SEED_CHANNELS,
    SEED_LABELS,
    read_deap,
    read_seed,
    subject_split,
)

RATE = 256.0
NAMES = ("Fp1", "Fz", "Cz", "Oz")


def tones(freqs: dict[float, float], seconds: float, rate: float = RATE, channels: int = 2) -> np.ndarray:
    """(channels, n) sum of sines {Hz: amplitude uV}."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs.items())
    return np.tile(x, (channels, 1))


def amplitude_at(x: np.ndarray, freq: float, rate: float) -> float:
    """Amplitude of the ``freq`` component of a 1-D signal (projection on sine and cosine)."""
    t = np.arange(len(x)) / rate
    return float(2 * np.hypot(np.mean(x * np.sin(2 * np.pi * freq * t)), np.mean(x * np.cos(2 * np.pi * freq * t))))


def recording(seconds: float, rate: float = RATE, channels: tuple[str, ...] = NAMES, seed: int = 0) -> EEGRecording:
    data = np.random.default_rng(seed).normal(0, 10, (len(channels), int(seconds * rate)))
    return EEGRecording(data, rate, channels, Path(f"trial_{seconds:g}s.mat"))


# --- filtering, resampling, windows ----------------------------------------------------------


def test_filter_removes_line_noise_and_drift_keeps_alpha() -> None:
    x = tones({0.2: 50.0, 10.0: 20.0, 50.0: 30.0}, 20.0)
    y = filter_eeg(x, RATE, EEGSpec())[0, int(2 * RATE) : -int(2 * RATE)]  # away from the edges
    core = x[0, int(2 * RATE) : -int(2 * RATE)]
    assert amplitude_at(core, 50.0, RATE) == pytest.approx(30.0, rel=0.01)
    assert amplitude_at(y, 50.0, RATE) < 30.0 * 10 ** (-40 / 20)  # 50 Hz down by more than 40 dB
    assert amplitude_at(y, 0.2, RATE) < 50.0 * 10 ** (-30 / 20)  # drift below the 1 Hz edge
    assert amplitude_at(y, 10.0, RATE) == pytest.approx(20.0, rel=0.02)  # alpha within 0.2 dB
    # zero phase: the 10 Hz tone is not shifted
    assert np.corrcoef(y, tones({10.0: 20.0}, 20.0)[0, int(2 * RATE) : -int(2 * RATE)])[0, 1] > 0.999


def test_notch_harmonics_below_nyquist() -> None:
    x = tones({100.0: 10.0, 20.0: 10.0}, 10.0, rate=512.0)
    spec = EEGSpec(high_hz=45.0)
    wide = filter_eeg(x, 512.0, EEGSpec(low_hz=1.0, high_hz=120.0, rate=256.0))  # passes 100 Hz but notches it
    assert amplitude_at(wide[0, 512:-512], 100.0, 512.0) < 0.1
    assert amplitude_at(filter_eeg(x, 512.0, spec)[0, 512:-512], 20.0, 512.0) == pytest.approx(10.0, rel=0.02)


@pytest.mark.parametrize("rate, target", [(200.0, 128.0), (512.0, 128.0), (128.0, 128.0), (1000.0, 256.0)])
def test_resample_length_and_frequency(rate: float, target: float) -> None:
    x = tones({7.0: 5.0}, 10.0, rate=rate)
    y = resample_eeg(x, rate, target)
    assert y.shape == (2, int(10.0 * target))
    assert amplitude_at(y[0, 64:-64], 7.0, target) == pytest.approx(5.0, rel=0.02)


def test_windows_of_a_21_s_trial() -> None:
    rec = recording(21.0)
    spec = EEGSpec()
    w = eeg_windows(rec, spec)
    assert w.shape == (4, 4, 672) and w.dtype == np.float32
    whole = resample_eeg(filter_eeg(rec.data, RATE, spec), RATE, spec.rate)
    np.testing.assert_allclose(w[3], whole[:, 3 * 672 : 4 * 672], atol=1e-4)
    assert eeg_windows(rec, EEGSpec(hop_s=2.625)).shape[0] == 7  # half-overlapping windows


def test_count_spreads_windows_from_start_to_end() -> None:
    rec = recording(23.0)  # 2944 samples at 128 Hz
    spec = EEGSpec()
    w = eeg_windows(rec, spec, count=4)
    whole = resample_eeg(filter_eeg(rec.data, RATE, spec), RATE, spec.rate)
    assert w.shape == (4, 4, 672)
    np.testing.assert_allclose(w[0], whole[:, :672], atol=1e-4)
    np.testing.assert_allclose(w[-1], whole[:, -672:], atol=1e-4)
    hop = (whole.shape[1] - 672) / 3
    np.testing.assert_allclose(w[1], whole[:, round(hop) : round(hop) + 672], atol=1e-4)
    assert eeg_windows(rec, spec, count=1).shape == (1, 4, 672)


def test_too_short_names_file_and_lengths() -> None:
    with pytest.raises(RecordingError, match=r"trial_4s\.mat.*4\.00 s long.*5\.25 s window"):
        eeg_windows(recording(4.0), EEGSpec())
    with pytest.raises(RecordingError, match=r"0.05 s long"):
        eeg_windows(recording(0.05), EEGSpec())  # too short to filter, too


def test_spec_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="rate / 2"):
        EEGSpec(high_hz=70.0, rate=128.0)
    spec = EEGSpec(low_hz=0.5, high_hz=40.0, notch_hz=60.0, rate=256.0, window_s=4.0, hop_s=1.0)
    assert EEGSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert (spec.samples, spec.hop) == (1024, 256)


def test_standardisation_uses_given_statistics() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal([[5.0], [-3.0]], [[2.0], [10.0]], (50, 2, 64)).astype(np.float32)
    mean, std = channel_stats(train)
    np.testing.assert_allclose(mean, [5.0, -3.0], atol=0.1)
    np.testing.assert_allclose(std, [2.0, 10.0], rtol=0.03)
    z = standardise(train, mean, std)
    np.testing.assert_allclose(z.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2)), 1, atol=1e-3)
    flat = channel_stats(np.zeros((3, 2, 10), np.float32))
    assert np.all(np.isfinite(standardise(np.ones((1, 2, 10), np.float32), *flat)))


def test_preprocessing_picks_channels_by_name_and_round_trips() -> None:
    rec = recording(21.0)
    stats = ChannelStats(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    prep = EEGPreprocessing(EEGSpec(), ("Oz", "Fp1", "Cz"), stats)
    again = EEGPreprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    x = again.inputs(rec, count=4)
    by_hand = standardise(eeg_windows(rec, EEGSpec(), count=4)[:, [3, 0, 2]], *stats)
    np.testing.assert_allclose(x, by_hand, atol=1e-5)
    with pytest.raises(RecordingError, match=r"no channel \['Oz'\]"):
        prep.inputs(EEGRecording(rec.data[:3], RATE, NAMES[:3], rec.path))


def test_standard_1020_names() -> None:
    assert nonstandard_channels(["Fp1", "FPZ", "oz", "CB1", "EEG 1"]) == ["CB1", "EEG 1"]


# --- reading files ---------------------------------------------------------------------------


def test_mat_reads_named_variable_in_microvolts(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(0, 20, (4, 1000))
    scipy.io.savemat(tmp_path / "t.mat", {"eeg": data, "info": np.array([1.0, 2.0])})
    rec = read_eeg(tmp_path / "t.mat", rate=200, mat_key="eeg", channels=NAMES)
    np.testing.assert_array_equal(rec.data, data)
    assert (rec.rate, rec.channels, rec.duration_s) == (200.0, NAMES, 5.0)
    assert read_eeg(tmp_path / "t.mat", rate=200).channels == ("EEG 1", "EEG 2", "EEG 3", "EEG 4")  # the only 2-D variable


def test_mat_v73_through_h5py(tmp_path: Path) -> None:
    data = np.arange(12.0).reshape(3, 4)
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["eeg"] = data.T  # MATLAB writes column-major
    header = b"MATLAB 7.3 MAT-file, HDF5 schema 1.00 .".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"
    with path.open("r+b") as f:
        f.write(header)
    np.testing.assert_array_equal(read_eeg(path, rate=100, mat_key="eeg").data, data)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mat_key": "EEG"}, r"t\.mat: has no variable 'EEG'; it has \['eeg', 'labels'\]"),
        ({"mat_key": "eeg", "channels": ("a", "b", "c")}, r"t\.mat: variable 'eeg' has 4 channels \(rows\), but 3 channel names"),
        ({"mat_key": "labels"}, r"t\.mat: variable 'labels' has shape \(1, 2, 3\); it must be 2-D"),
    ],
)
def test_mat_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    scipy.io.savemat(tmp_path / "t.mat", {"eeg": np.zeros((4, 100)), "labels": np.zeros((1, 2, 3))})
    with pytest.raises(RecordingError, match=message):
        read_eeg(tmp_path / "t.mat", rate=128, **kwargs)


def test_mat_ambiguous_or_transposed(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "t.mat", {"eeg": np.zeros((100, 4)), "eog": np.zeros((2, 100))})
    with pytest.raises(RecordingError, match=r"t\.mat: holds the variables \['eeg', 'eog'\]; name the one with the EEG"):
        read_eeg(tmp_path / "t.mat", rate=128)
    with pytest.raises(RecordingError, match="samples x channels"):
        read_eeg(tmp_path / "t.mat", rate=128, mat_key="eeg", channels=NAMES)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "empty.mat").write_bytes(b"")
    (tmp_path / "junk.mat").write_bytes(b"not a matlab file at all" * 20)
    (tmp_path / "junk.edf").write_bytes(b"0       junk" * 30)
    cases = {"missing.mat": "not found", "empty.mat": "is empty", "junk.mat": "not a readable MATLAB file",
             "junk.edf": "not a readable EDF file", "t.csv": "not an EEG file"}  # fmt: skip
    for name, message in cases.items():
        with pytest.raises(RecordingError, match=rf"{name}: .*{message}"):
            read_eeg(tmp_path / name, rate=128)
    scipy.io.savemat(tmp_path / "t.mat", {"eeg": np.zeros((2, 10))})
    with pytest.raises(RecordingError, match="does not store its sampling rate"):
        read_eeg(tmp_path / "t.mat")


def write_raw(path: Path, data_uv: np.ndarray, rate: float, names: tuple[str, ...]) -> None:
    raw = mne.io.RawArray(data_uv * 1e-6, mne.create_info(list(names), rate, "eeg"), verbose="error")
    mne.export.export_raw(path, raw, fmt=path.suffix[1:], physical_range=(-500.0, 500.0), overwrite=True, verbose="error")


@pytest.mark.parametrize("suffix, tolerance", [(".edf", 0.02), (".bdf", 1e-3)])  # 16- and 24-bit samples over +-500 uV
def test_edf_bdf_round_trip_in_microvolts(tmp_path: Path, suffix: str, tolerance: float) -> None:
    data = tones({10.0: 40.0}, 4.0, channels=4) + np.arange(4)[:, None] * 10
    path = tmp_path / f"trial{suffix}"
    write_raw(path, data, RATE, NAMES)
    rec = read_eeg(path, rate=RATE)
    assert (rec.rate, rec.channels, rec.data.shape) == (RATE, NAMES, data.shape)
    np.testing.assert_allclose(rec.data, data, atol=tolerance)
    picked = read_eeg(path, channels=("Oz", "Fp1"))
    np.testing.assert_allclose(picked.data, data[[3, 0]], atol=tolerance)


def test_edf_rate_and_channel_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "trial.edf"
    write_raw(path, np.zeros((4, 1024)), RATE, NAMES)
    with pytest.raises(RecordingError, match=r"trial\.edf: is sampled at 256 Hz, but the rate given is 500 Hz; correct the manifest"):
        read_eeg(path, rate=500)
    with pytest.raises(RecordingError, match=r"trial\.edf: has 4 channels .*none named \['Pz'\]"):
        read_eeg(path, channels=("Fp1", "Pz"))


# --- trial manifests and splits --------------------------------------------------------------


def write_trials(root: Path, subjects: range, seconds: float = 21.0) -> Path:
    """s01/t1.mat ... with a manifest; even trials as EDF; returns the manifest's path."""
    rows = []
    for s in subjects:
        (root / f"s{s:02d}").mkdir(parents=True)
        for t, label in enumerate(("happy", "sad")):
            data = recording(seconds, seed=10 * s + t).data
            if t % 2:
                eeg, key = f"s{s:02d}/t{t}.mat", "X"
                scipy.io.savemat(root / eeg, {"X": data})
            else:
                eeg, key = f"s{s:02d}/t{t}.edf", ""
                write_raw(root / eeg, data, RATE, NAMES)
            (root / f"s{s:02d}/t{t}.mp4").write_bytes(b"video")
            rows.append({"subject": s, "trial": f"t{t}", "label": label, "eeg": eeg, "video": f"s{s:02d}/t{t}.mp4", "audio": "",
                         "eeg_rate": RATE, "mat_key": key, "channels": " ".join(NAMES)})  # fmt: skip
    manifest = root / "trials.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_manifest_reads_trials_and_their_eeg(tmp_path: Path) -> None:
    trials = read_trial_manifest(write_trials(tmp_path, range(1, 3)))
    assert [(t.subject, t.trial, t.label) for t in trials] == [(1, "t0", "happy"), (1, "t1", "sad"), (2, "t0", "happy"), (2, "t1", "sad")]
    assert trials[1].mat_key == "X" and trials[0].mat_key is None and trials[0].audio is None
    assert trials[0].video == tmp_path / "s01" / "t0.mp4" and trials[0].channels == NAMES
    for t in trials:
        rec = t.read_eeg()
        assert rec.channels == NAMES and rec.data.shape == (4, 21 * 256)
        assert eeg_windows(rec, EEGSpec(), count=4).shape == (4, 4, 672)


def edit_manifest(manifest: Path, row: int, **changes: str) -> None:
    lines = list(csv.DictReader(manifest.open(newline="")))
    lines[row].update(changes)
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eeg": "s01/missing.mat"}, r"line 3: the eeg file .*missing\.mat is not there"),
        ({"subject": "anna"}, r"line 3: subject 'anna' is not a number"),
        ({"eeg_rate": ""}, r"line 3: eeg_rate is empty"),
        ({"eeg_rate": "fast"}, r"line 3: eeg_rate 'fast' is not a number"),
        ({"trial": "t0"}, r"line 3: subject 1 has trial 't0' twice"),
    ],
)
def test_manifest_errors_name_line_and_file(tmp_path: Path, changes: dict, message: str) -> None:
    manifest = write_trials(tmp_path, range(1, 2))
    edit_manifest(manifest, 1, **changes)
    with pytest.raises(ValueError, match=message):
        read_trial_manifest(manifest)


def test_manifest_wrong_rate_key_and_channels_reach_the_reader(tmp_path: Path) -> None:
    manifest = write_trials(tmp_path, range(1, 2))
    edit_manifest(manifest, 0, eeg_rate="512")
    edit_manifest(manifest, 1, mat_key="eeg")
    trials = read_trial_manifest(manifest)
    with pytest.raises(RecordingError, match=r"t0\.edf: is sampled at 256 Hz, but the rate given is 512 Hz"):
        trials[0].read_eeg()
    with pytest.raises(RecordingError, match=r"t1\.mat: has no variable 'eeg'; it has \['X'\]"):
        trials[1].read_eeg()
    edit_manifest(manifest, 1, mat_key="X", channels="Fp1;Fz;Cz")
    with pytest.raises(RecordingError, match=r"t1\.mat: variable 'X' has 4 channels \(rows\), but 3 channel names"):
        read_trial_manifest(manifest)[1].read_eeg()


def test_manifest_missing_column(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("subject,trial,label,eeg\n1,t,happy,x.mat\n")
    with pytest.raises(ValueError, match=r"the columns \['video', 'eeg_rate', 'mat_key', 'channels'\] are missing"):
        read_trial_manifest(tmp_path / "m.csv")


def test_subject_split_paper_and_fallback() -> None:
    paper = subject_split(range(1, 43))
    assert paper == PAPER_SUBJECTS
    partial = subject_split([1, 2, 3, 31, 40, 41])
    assert partial.to_dict() == {"train": [1, 2, 3], "val": [31], "test": [40, 41]}
    seed_like = subject_split(range(1, 16))  # SEED's 15 subjects: all in 1-30, so proportions
    assert seed_like.to_dict() == {"train": list(range(1, 12)), "val": [12, 13], "test": [14, 15]}
    assert subject_split(range(1, 4)).to_dict() == {"train": [1], "val": [2], "test": [3]}
    with pytest.raises(ValueError, match="give 3 or more"):
        subject_split([1, 2])


# --- public corpora --------------------------------------------------------------------------


def test_seed_layout_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    trials = {f"djc_eeg{i}": rng.normal(0, 10, (62, 200 * 6)) for i in (1, 2, 3, 4)}
    scipy.io.savemat(tmp_path / "1_20131027.mat", trials)
    scipy.io.savemat(tmp_path / "2_20140404.mat", {"ww_eeg1": trials["djc_eeg1"], "ww_eeg3": trials["djc_eeg3"]})
    scipy.io.savemat(tmp_path / "label.mat", {"label": np.array([SEED_LABELS])})
    out = read_seed(tmp_path)
    assert [(t.subject, t.trial, t.label) for t in out] == [
        (1, "20131027/1", "positive"), (1, "20131027/2", "neutral"), (1, "20131027/3", "negative"), (1, "20131027/4", "negative"),
        (2, "20140404/1", "positive"), (2, "20140404/3", "negative"),
    ]  # fmt: skip
    np.testing.assert_array_equal(out[2].recording.data, trials["djc_eeg3"])
    assert out[0].recording.rate == 200.0 and out[0].recording.channels == tuple(SEED_CHANNELS) and len(SEED_CHANNELS) == 62
    assert eeg_windows(out[0].recording, EEGSpec()).shape == (1, 62, 672)
    scipy.io.savemat(tmp_path / "3_20150101.mat", {"xx_eeg1": np.zeros((32, 100))})
    with pytest.raises(ValueError, match=r"3_20150101\.mat: xx_eeg1 has shape \(32, 100\); SEED trials are 62 channels"):
        read_seed(tmp_path)


def test_deap_layout_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10, (4, 40, 8064))  # 4 of the 40 trials, in DEAP's layout
    ratings = np.array([[7.1, 8.0, 5, 5], [2.0, 7.5, 5, 5], [6.0, 1.5, 5, 5], [1.0, 2.0, 5, 5]])
    with (tmp_path / "s07.dat").open("wb") as f:
        pickle.dump({"data": data, "labels": ratings}, f)
    out = read_deap(tmp_path)
    assert [(t.subject, t.trial, t.label) for t in out] == [(7, "1", "HVHA"), (7, "2", "LVHA"), (7, "3", "HVLA"), (7, "4", "LVLA")]
    rec = out[1].recording
    assert (rec.rate, rec.channels, rec.data.shape) == (128.0, tuple(DEAP_CHANNELS), (32, 7680))  # 3 s baseline dropped
    np.testing.assert_array_equal(rec.data, data[1, :32, 384:])
    assert [t.label for t in read_deap(tmp_path, "valence")] == ["high valence", "low valence", "high valence", "low valence"]
    with (tmp_path / "s08.dat").open("wb") as f:
        pickle.dump({"data": data[:, :10], "labels": ratings}, f)
    with pytest.raises(ValueError, match=r"s08\.dat: data \(4, 10, 8064\)"):
        read_deap(tmp_path)


# --- synthetic EEG ---------------------------------------------------------------------------


def band_power(x: np.ndarray, rate: float, lo: float, hi: float) -> np.ndarray:
    f = np.fft.rfftfreq(x.shape[-1], 1 / rate)
    p = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    return p[..., (f >= lo) & (f < hi)].sum(-1)


def test_synthetic_trials_are_reproducible_eeg_with_artefacts() -> None:
    spec = SyntheticEEGSpec()
    a = synthetic_trial_eeg(spec, 3, 1, seed=5, index=2)
    assert np.array_equal(a.data, synthetic_trial_eeg(spec, 3, 1, seed=5, index=2).data)
    assert not np.array_equal(a.data, synthetic_trial_eeg(spec, 3, 1, seed=5, index=3).data)
    assert a.data.shape == (14, 21 * 256) and a.channels == CHANNELS_14 and a.rate == 256.0
    rms = a.data.std(axis=1)
    assert np.all((rms > 5) & (rms < 60))  # scalp EEG: tens of uV
    # line noise at 50 Hz, gone after filtering
    assert amplitude_at(a.data[6], 50.0, 256.0) > 4.0
    assert amplitude_at(filter_eeg(a.data, 256.0, EEGSpec())[6, 512:-512], 50.0, 256.0) < 0.1
    # blinks: slow (< 4 Hz) power far larger at AF3 than at O1, over many trials
    slow = np.mean([band_power(synthetic_trial_eeg(spec, 3, 0, seed=5, index=i).data, 256.0, 0.5, 3.0) for i in range(6)], axis=0)
    assert slow[CHANNELS_14.index("AF3")] > 3 * slow[CHANNELS_14.index("O1")]


def test_synthetic_class_shows_in_band_power_and_codes_merge_classes() -> None:
    spec = SyntheticEEGSpec(labels=("neutral", "calm", "happy"), subject_spread_db=0.0)
    posterior_alpha = {
        label: np.mean([band_power(synthetic_trial_eeg(spec, 1, label, index=i).data[CHANNELS_14.index("O1")], 256.0, 8, 13)
                        for i in range(5)])
        for label in range(3)
    }  # fmt: skip
    assert posterior_alpha[1] > 2 * posterior_alpha[0]  # calm: +5 dB posterior alpha
    merged = SyntheticEEGSpec(labels=("a", "b"), codes=(2, 2))
    assert merged.code(0) == merged.code(1) == 2
    with pytest.raises(ValueError, match="one code in 0..7 per class"):
        SyntheticEEGSpec(labels=("a", "b"), codes=(0,))

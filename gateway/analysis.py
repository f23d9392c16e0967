"""Analyse one recording: windows in; timeline, annotated copy and audio track out.

The one call every front end shares (CLI, web jobs, batch client)::

    analyzer = Analyzer(EmotionClient("localhost:8001"))
    result = analyzer.analyze("session.mp4", out_dir="results/", progress=print)

Data flows one way: decode -> windows -> tensors -> Triton -> timeline -> files. The models are
reached only through Triton.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec, FaceBox, FaceDetector, crop_face, whole_image_crop
from preprocessing.recording import RecordingInfo, probe, read_still
from preprocessing.windows import Window, WindowSpec, read_windows

from ._exceptions import InputError, NoFaceFound
from .render import render_image, render_video
from .timeline import Timeline, WindowResult
from .triton_client import EmotionClient, ModelInfo

__all__ = ["Analysis", "Analyzer", "FACE_MODEL", "Progress"]

log = logging.getLogger(__name__)

FACE_MODEL = "emotion_face"  # ensemble: a window's face crops -> its emotion probabilities
FACE_CROP = CropSpec(size=64, grey=True)  # what the mini-Xception was trained on (FER-2013)
BATCH_WINDOWS = 8  # windows per request: small enough to overlap decoding with inference


@dataclass(frozen=True)
class Progress:
    """Reported to a progress callback: ``done`` of ``total`` units of ``stage``."""

    stage: str  # "windows", then "video"
    done: float
    total: float


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
    """

    recording: RecordingInfo
    timeline: Timeline
    files: dict[str, Path] = field(default_factory=dict)
    faces: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        info = self.recording
        out = {
            "recording": {
                "file": info.path.name,
                "kind": "image" if info.is_still else "video",
                "duration_s": round(info.duration_s, 3),
                "width": info.width,
                "height": info.height,
                "fps": round(info.fps, 3),
                "audio": info.has_audio,
            },
            **self.timeline.to_dict(),
            "files": {kind: path.name for kind, path in self.files.items()},
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
        whole_image: bool = False,
        render: bool = True,
        progress: ProgressCallback | None = None,
    ) -> Analysis:
        """Analyse a video or a still image and write the results into ``out_dir``.

        Files appear only when the whole analysis succeeded: they are written to a temporary
        folder inside ``out_dir`` and moved into place at the end.

        Parameters
        ----------
        whole_image : bool
            Still images only: the image is one ready face crop (as in face datasets).
        render : bool
            Write the annotated copy.

        Raises
        ------
        InputError
            The recording cannot be analysed (unreadable, unsupported, no face).
        UpstreamError
            Triton could not answer.
        """
        path = Path(path)
        try:
            info = probe(path)
        except RecordingError as err:
            raise InputError(str(err)) from err
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".emofuse-", dir=out_dir))
        try:
            analysis = self._analyze(info, staging, safe_stem(path), whole_image, render, progress)
            for kind, file in analysis.files.items():
                analysis.files[kind] = file.replace(out_dir / file.name)
            return analysis
        except RecordingError as err:
            raise InputError(str(err)) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _analyze(
        self, info: RecordingInfo, staging: Path, stem: str, whole_image: bool, render: bool, progress: ProgressCallback | None
    ) -> Analysis:
        model = self._face_model()
        if info.is_still:
            analysis = self._analyze_still(info, model, whole_image, staging / f"{stem}.annotated.png" if render else None)
        elif not info.has_video:
            raise InputError(f"{info.path.name}: no video track; audio-only analysis needs the speech model, not served yet.")
        else:
            analysis = self._analyze_video(info, model, staging, stem, progress)
            if render:
                video = staging / f"{stem}.annotated.mp4"
                report = None if progress is None else (lambda f: progress(Progress("video", f, 1.0)))
                render_video(info, analysis.timeline, video, progress=report)
                analysis.files["video"] = video
        timeline_path = staging / f"{stem}.timeline.json"
        analysis.files["timeline"] = timeline_path
        timeline_path.write_text(json.dumps(analysis.to_dict(), indent=2) + "\n")
        return analysis

    def _face_model(self) -> ModelInfo:
        model = self.client.model(FACE_MODEL)
        if len(model.labels) == 0:
            raise InputError(f"Model {FACE_MODEL} has no labels in its config; rebuild the repository.")
        return model

    def _analyze_video(
        self, info: RecordingInfo, model: ModelInfo, staging: Path, stem: str, progress: ProgressCallback | None
    ) -> Analysis:
        wav = staging / f"{stem}.wav" if info.has_audio else None
        reader = read_windows(info, self.spec, crop=FACE_CROP, detector=self.detector, wav_path=wav)
        timeline = Timeline(FACE_MODEL, model.labels, model.trained)
        pending: list[tuple[list[Window], Future]] = []
        for batch in _batches(reader, BATCH_WINDOWS):
            pending.append((batch, self._submit(batch)))
            if progress is not None:
                progress(Progress("windows", batch[-1].index + 1, len(reader)))
        for batch, future in pending:
            result = future.result()
            for window, probs, used in zip(batch, result["EMOTION_PROBS"], result["FACES_USED"][:, 0]):
                timeline.windows.append(_window_result(window, probs, int(used), model.trained))
        if not any(w.face_frames for w in timeline.windows):
            raise NoFaceFound(f"{info.path.name}: no face was found in any of its {len(timeline.windows)} windows.")
        files = {"audio": wav} if wav is not None else {}
        return Analysis(info, timeline, files)

    def _submit(self, batch: list[Window]) -> Future:
        crops = np.stack([w.faces for w in batch])  # (B, frames, 64, 64) uint8
        present = np.stack([w.face_found for w in batch])  # (B, frames) bool
        return self.client.submit(FACE_MODEL, {"FACE_CROPS": crops, "FACE_PRESENT": present}, ["EMOTION_PROBS", "FACES_USED"])

    def _detect_in_still(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in a photo: the video detector first, then the close-up one for faces filling it."""
        found = self.detector.detect(rgb)
        if not found:
            if self._closeup_detector is None:
                self._closeup_detector = FaceDetector("short")
            found = self._closeup_detector.detect(rgb)
        return found

    def _analyze_still(self, info: RecordingInfo, model: ModelInfo, whole_image: bool, out: Path | None) -> Analysis:
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
            FACE_MODEL,
            {"FACE_CROPS": np.stack(crops)[:, None], "FACE_PRESENT": np.ones((len(crops), 1), bool)},
            ["EMOTION_PROBS", "FACES_USED"],
        )
        timeline = Timeline(FACE_MODEL, model.labels, model.trained)
        for i, probs in enumerate(result["EMOTION_PROBS"]):
            status = "ok" if model.trained else "untrained"
            timeline.windows.append(WindowResult(i, 0.0, 0.0, status, probs if model.trained else None, 1, 1))
        faces = [{"box": [round(v, 1) for v in box]} for box in boxes]
        analysis = Analysis(info, timeline, faces=faces)
        if out is not None:
            render_image(rgb, boxes, [timeline.caption(w) for w in timeline.windows], out)
            analysis.files["image"] = out
        return analysis


def _window_result(window: Window, probs: np.ndarray, used: int, trained: bool) -> WindowResult:
    if used == 0:
        status, probs = "no_face", None
    elif not trained:
        status, probs = "untrained", None
    else:
        status = "ok"
    return WindowResult(window.index, window.start_s, window.end_s, status, probs, used, len(window.face_found))


def _batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch

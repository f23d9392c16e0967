"""Face detection (BlazeFace) and the face crop that the expression models take as input.

:class:`FaceDetector` runs MediaPipe's BlazeFace TFLite models (Apache-2.0, taken as files from the
``mediapipe`` 0.10.14 wheel, which is installed ``--no-deps`` and never imported) with the
``ai-edge-litert`` interpreter; the SSD anchors, box decoding and weighted non-maximum suppression
of MediaPipe's face-detection graphs are reimplemented here in numpy. :func:`crop_face` turns a
detected box into a model input as a :class:`CropSpec` says; training and serving both call it,
so a model sees in service exactly the crops it was trained on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

__all__ = ["FaceBox", "CropSpec", "FaceDetector", "crop_face", "whole_image_crop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceBox:
    """A detected face: corners in pixels of the frame it was found in, and a score in (0, 1].

    The box may reach past the frame's edges when the face does.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class CropSpec:
    """How a face becomes a model input; recorded with each model's preprocessing settings.

    Attributes
    ----------
    size : int
        Side of the output in pixels.
    grey : bool
        True: (size, size) uint8 luma (ITU-R BT.601, as ``cv2.COLOR_RGB2GRAY``);
        False: (size, size, 3) uint8 RGB.
    scale : float
        Side of the square cut from the frame divided by the longer side of the detected box.
    """

    size: int = 64
    grey: bool = True
    # BlazeFace's box is tight and square: hairline to just above the chin, cheek to cheek (on
    # scikit-image's astronaut it spans x 172..278, y 66..172, the chin being at y 185). FER-2013,
    # on which the expression model is trained, frames the whole face with little margin: brows,
    # chin and cheek contours in view, the face filling most of the 48x48 image. 1.25x brings the
    # chin and jaw line in with a thin band of hair and background (1.0 cuts the chin; 1.5 already
    # shows the whole hairdo and the collar) and keeps the face whole when a box is a little off.
    scale: float = 1.25

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 1 and self.scale > 0):
            raise ValueError(f"CropSpec needs an int size >= 1 and a scale > 0, got {self}.")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one crop: (size, size) if grey, else (size, size, 3)."""
        return (self.size, self.size) if self.grey else (self.size, self.size, 3)


@dataclass(frozen=True)
class _Model:
    """A BlazeFace variant as MediaPipe's graph configures it (``face_detection_*_range.pbtxt``)."""

    file: str
    size: int  # input side in pixels; also the x/y/w/h scale of the regressors
    strides: tuple[int, ...]  # SsdAnchorsCalculator: one per layer
    interpolated: bool  # interpolated_scale_aspect_ratio > 0: one more anchor per layer and cell


_MODELS: dict[str, _Model] = {
    "short": _Model("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),  # 896 anchors
    "full": _Model("face_detection_full_range_sparse.tflite", 192, (4,), False),  # 2304 anchors
}
_NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for both face-detection graphs
_SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh


def ssd_anchors(size: int, strides: tuple[int, ...], interpolated: bool) -> np.ndarray:
    """Anchor centres of MediaPipe's SsdAnchorsCalculator, shape (anchors, 2), (x, y) in [0, 1].

    Only the settings the face detectors use: a single aspect ratio 1.0, ``fixed_anchor_size``
    (every anchor is 1 x 1, so only centres matter) and offsets 0.5. Consecutive layers of one
    stride share a feature map; each of its cells gets (1 + interpolated) anchors per layer, in
    row-major cell order.
    """
    out = []
    i = 0
    while i < len(strides):
        stride, per_cell = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            per_cell += 1 + int(interpolated)
            i += 1
        side = math.ceil(size / stride)
        centres = (np.arange(side, dtype=np.float32) + 0.5) / side
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    Takes the best remaining box, averages it with every remaining box that overlaps it by IoU >
    ``iou`` (weights: their scores), keeps the best score, and drops them all; repeats.

    boxes: (n, 4) x0, y0, x1, y1; scores: (n,). Returns (box (4,), score) pairs, best first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive = np.ones(len(boxes), bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        lo = np.maximum(boxes[i, :2], boxes[:, :2])
        hi = np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        overlap = inter / np.maximum(areas[i] + areas - inter, 1e-12)
        group = alive & (overlap > iou)
        group[i] = True
        weights = scores[group]
        kept.append((weights @ boxes[group] / weights.sum(), float(scores[i])))
        alive &= ~group
    return kept


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Keep TFLite's C++ runtime from printing its INFO line about XNNPACK on the process's stderr,
    which belongs to the program's own messages (a CLI error is exactly one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _model_dir() -> Path:
    spec = importlib.util.find_spec("mediapipe")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BlazeFace needs the model files of the mediapipe 0.10.14 wheel: pip install --no-deps mediapipe==0.10.14"
        )
    return Path(spec.submodule_search_locations[0]) / "modules" / "face_detection"


class FaceDetector:
    """BlazeFace on one CPU thread: a few milliseconds per 1280x720 frame, all steps included.

    Parameters
    ----------
    model : 'short' | 'full'
        'short': 128x128 input, for faces at least about 12 % of the searched square's side, up
        to close-ups filling it (selfie distance, face photos).
        'full': 192x192 input on a 4-pixel anchor grid, for faces down to about 6 % of the
        searched square's side (a person a few metres away), but it misses faces filling the frame.
    min_score : float
        Faces scoring below this, in (0, 1), are dropped.
    tiles : bool
        For frames wider (or taller) than 4:3, also look at square tiles spanning the frame's
        short side (two for 16:9, at most three), where small faces appear long/short times
        larger (1.8x for 16:9) than in the whole letterboxed frame, which is still searched for
        faces too large for a tile. Costs one inference per tile.

    The interpreter is loaded once and runs on one thread; callers parallelise over frames.
    Calls to :meth:`detect` on one detector are serialised by a lock, so it may be shared.
    """

    # Default "full" with tiles, chosen by measurement (benchmarks/face_detection.py: 1280x720
    # frames, the astronaut photo 250-400 px tall, her face 45-80 px wide, at random places on 16
    # backgrounds): "short" found 0 of 64 faces (it wants faces of 150 px and more, or close-ups
    # filling the frame), "full" 17, "full" with tiles 61 (Haar at half size 55), with about as many
    # false boxes (mostly scoring 0.5-0.6). Cost: 3 inferences instead of 1, still a few percent of
    # a Haar cascade's time. Use "short" for close-ups and face photos, where "full" misses faces
    # that fill the frame.
    TRACK_SCALE = 3.0  # see detect_near

    def __init__(self, model: Literal["short", "full"] = "full", min_score: float = 0.5, *, tiles: bool = True) -> None:
        if model not in _MODELS:
            raise ValueError(f"model must be one of {sorted(_MODELS)}, got {model!r}.")
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must lie in (0, 1), got {min_score}.")
        from ai_edge_litert.interpreter import Interpreter

        self.model = model
        self.min_score = min_score
        self.tiles = tiles
        self._size = _MODELS[model].size
        path = _model_dir() / _MODELS[model].file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; reinstall with: pip install --no-deps mediapipe==0.10.14")
        with _native_stderr_silenced():
            self._interpreter = Interpreter(model_path=str(path), num_threads=1)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self._scores, self._regressors = outputs[0]["index"], outputs[1]["index"]  # (1, N, 1), (1, N, 16)
        self._anchors = ssd_anchors(self._size, _MODELS[model].strides, _MODELS[model].interpolated)
        self._min_logit = math.log(min_score / (1.0 - min_score))
        self._lock = threading.Lock()
        log.debug("BlazeFace %s loaded from %s, %d anchors", model, path, len(self._anchors))

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in one frame.

        Parameters
        ----------
        rgb : ndarray, shape (H, W, 3), uint8
            The frame, RGB; any size from 1x1 up, any aspect ratio.

        Returns
        -------
        list of FaceBox
            In pixels of ``rgb``, sorted by score, best first; empty if no face scores
            ``min_score`` or more.
        """
        _check_rgb(rgb, "detect")
        height, width = rgb.shape[:2]
        long, short = max(height, width), min(height, width)
        with self._lock:
            if self.tiles and 4 * short < 3 * long <= 9 * short:
                # Scaled so that the short side fills the input: searched in square tiles, then whole.
                zoom = self._size / short
                image = _resize(rgb, round(width * zoom), round(height * zoom))
                passes = [*self._search_tiles(image), self._search_whole(image)]
            else:
                image = rgb
                passes = [self._search_whole(rgb)]
        to_frame = np.tile([width / image.shape[1], height / image.shape[0]], 2)
        boxes = np.concatenate([b for b, _ in passes]) * to_frame
        return _faces(boxes, np.concatenate([s for _, s in passes]))

    def detect_near(self, rgb: np.ndarray, box: FaceBox) -> list[FaceBox]:
        """Faces in the square around ``box``, a face found in a frame shortly before: one
        inference instead of the whole frame's three, for following a face from frame to frame.

        The square's side is ``TRACK_SCALE`` times the box's longer side (the face then fills a
        third of the input, where BlazeFace full-range is at its best), moved inside the frame.
        Same parameters and result as :meth:`detect`; empty when the face has left the square.
        """
        _check_rgb(rgb, "detect_near")
        height, width = rgb.shape[:2]
        side = max(1, min(round(self.TRACK_SCALE * max(box.width, box.height)), width, height))
        x0 = min(max(round((box.x0 + box.x1 - side) / 2), 0), width - side)
        y0 = min(max(round((box.y0 + box.y1 - side) / 2), 0), height - side)
        with self._lock:
            boxes, scores = self._search_whole(rgb[y0 : y0 + side, x0 : x0 + side])
        return _faces(boxes + np.tile([x0, y0], 2), scores)

    def _search_whole(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole (h, w, 3) ``image`` letterboxed: its longer side fitted to the input, centred,
        black bars (as MediaPipe pads). Boxes (n, 4) in ``image`` pixels, scores (n,)."""
        size = self._size
        height, width = image.shape[:2]
        fit = size / max(height, width)
        rw, rh = max(1, round(width * fit)), max(1, round(height * fit))
        ox, oy = (size - rw) // 2, (size - rh) // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[oy : oy + rh, ox : ox + rw] = _resize(image, rw, rh)
        boxes, scores = self._infer(canvas)
        return (boxes - np.tile([ox, oy], 2)) * np.tile([width / rw, height / rh], 2), scores

    def _search_tiles(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Square tiles of ``image``, whose short side is the input's side, spread evenly (and
        overlapping) along its long side. Boxes (n, 4) in ``image`` pixels, scores (n,), per tile.

        A face cut by a seam between tiles is dropped there: a smaller face lies whole in the
        neighbouring tile, a larger one is found by the search of the whole frame.
        """
        size = self._size
        axis = 0 if image.shape[1] >= image.shape[0] else 1  # box coordinate the tiles step along: x 0, y 1
        span = image.shape[1 - axis]
        out = []
        for start in np.linspace(0, span - size, math.ceil(span / size)).round().astype(int):
            boxes, scores = self._infer(image[:, start : start + size] if axis == 0 else image[start : start + size])
            lo, hi = boxes[:, axis], boxes[:, axis + 2]
            whole = ((start == 0) | (lo > 1)) & ((start == span - size) | (hi < size - 1))
            boxes = boxes[whole]
            boxes[:, [axis, axis + 2]] += start
            out.append((boxes, scores[whole]))
        return out

    def _infer(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BlazeFace on one (size, size, 3) uint8 image: boxes (n, 4) x0, y0, x1, y1 in its
        pixels and their scores (n,) in [min_score, 1], for the anchors scoring min_score or more."""
        size = self._size
        tensor = square.astype(np.float32)[None] * np.float32(2 / 255) - np.float32(1.0)  # [-1, 1]
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        hits = np.flatnonzero(logits >= self._min_logit)
        raw = self._interpreter.get_tensor(self._regressors)[0, hits, :4].astype(np.float64)
        # Offsets and sizes in input pixels around 1x1 anchors (MediaPipe's x/y/w/h scale = input side).
        centre = raw[:, :2] + self._anchors[hits] * size
        half = np.abs(raw[:, 2:4]) / 2
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[hits].astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)))
        return np.concatenate([centre - half, centre + half], axis=1), scores

    def __repr__(self) -> str:
        return f"FaceDetector(model={self.model!r}, min_score={self.min_score}, tiles={self.tiles})"


def _faces(boxes: np.ndarray, scores: np.ndarray) -> list[FaceBox]:
    """Raw detections (n, 4) and their scores (n,) merged into faces, best first."""
    return [FaceBox(*map(float, box), score=s) for box, s in _weighted_nms(boxes, scores, _NMS_IOU)]


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to (height, width): exact 2x2-mean halvings while it is at least twice
    too large (anti-aliased, and much faster than INTER_AREA at odd factors), then bilinear."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def crop_face(rgb: np.ndarray, box: FaceBox, spec: CropSpec) -> np.ndarray:
    """The model input for one face: a square around the box, resized to ``spec.size``.

    The square is centred on the box, its side ``spec.scale`` times the box's longer side. Where it
    reaches past the frame, the frame's edge pixels are repeated (``cv2.BORDER_REPLICATE``): no
    black bars, which the training images never show. Resized with ``cv2.INTER_AREA``.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3), uint8
        The frame the box was found in.
    box : FaceBox
        In pixels of ``rgb``; must overlap the frame.
    spec : CropSpec

    Returns
    -------
    ndarray, uint8, shape (size, size) if ``spec.grey`` else (size, size, 3) RGB
    """
    _check_rgb(rgb, "crop_face")
    height, width = rgb.shape[:2]
    side = max(1, round(spec.scale * max(box.width, box.height)))
    x0 = math.floor((box.x0 + box.x1 - side) / 2 + 0.5)
    y0 = math.floor((box.y0 + box.y1 - side) / 2 + 0.5)
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1:
        raise ValueError(f"{box} lies outside the {width}x{height} frame.")
    patch = rgb[cy0:cy1, cx0:cx1]
    if spec.grey:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (spec.size, spec.size), interpolation=cv2.INTER_AREA)


def whole_image_crop(rgb: np.ndarray, spec: CropSpec) -> np.ndarray:
    """An image that is already a face crop (as in face datasets), as a model input.

    Returns
    -------
    ndarray, uint8, shape (size, size) if ``spec.grey`` else (size, size, 3) RGB
    """
    _check_rgb(rgb, "whole_image_crop")
    patch = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if spec.grey else rgb
    return cv2.resize(patch, (spec.size, spec.size), interpolation=cv2.INTER_AREA)


def _check_rgb(rgb: object, where: str) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(
            f"{where} takes an RGB frame, a uint8 array of shape (H, W, 3); got {got}. "
            "Convert grey with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), BGR with cv2.COLOR_BGR2RGB, "
            "floats with (img * 255).round().astype(np.uint8)."
        )
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{where} got an empty frame of shape {rgb.shape}.")

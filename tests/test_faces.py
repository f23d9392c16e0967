"""Face detection (BlazeFace) and face crops, on real photos from scikit-image."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
from skimage import data

from preprocessing.faces import CropSpec, FaceBox, FaceDetector, crop_face, ssd_anchors

# Hand-marked face of the 512x512 astronaut photo (x0, y0, x1, y1): hairline to chin, cheek to cheek.
FACE = (185.0, 77.0, 275.0, 185.0)


def iou(box: FaceBox, ref: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(box.x1, ref[2]) - max(box.x0, ref[0]))
    iy = max(0.0, min(box.y1, ref[3]) - max(box.y0, ref[1]))
    inter = ix * iy
    return inter / (box.width * box.height + (ref[2] - ref[0]) * (ref[3] - ref[1]) - inter)


def shifted(ref: tuple[float, ...], scale: float, dx: float, dy: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (v * scale for v in ref)
    return x0 + dx, y0 + dy, x1 + dx, y1 + dy


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def background() -> np.ndarray:
    """A real 1280x720 photo without a face (the rocket of scikit-image, resized)."""
    return cv2.resize(data.rocket(), (1280, 720), interpolation=cv2.INTER_AREA)


# --- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["short", "full"])
def test_astronaut_face_is_found(model: str, astronaut: np.ndarray) -> None:
    boxes = FaceDetector(model).detect(astronaut)
    assert len(boxes) == 1
    assert boxes[0].score > 0.8
    assert iou(boxes[0], FACE) > 0.5, boxes[0]


@pytest.mark.parametrize(("height", "x", "y"), [(300, 500, 200), (300, 60, 380), (300, 930, 40), (400, 800, 300), (700, 300, 10)])
def test_face_in_720p_frame_at_known_offset(detector: FaceDetector, astronaut, background, height: int, x: int, y: int) -> None:
    """The whole astronaut photo, 300 to 700 px tall (her face 55 to 125 px wide), pasted into a 720p photo."""
    frame = background.copy()
    frame[y : y + height, x : x + height] = cv2.resize(astronaut, (height, height), interpolation=cv2.INTER_AREA)
    boxes = detector.detect(frame)
    expected = shifted(FACE, height / 512, x, y)
    assert boxes, "no face found"
    assert iou(boxes[0], expected) > 0.5, (boxes, expected)


def test_detect_near_follows_a_moving_face(detector: FaceDetector, astronaut, background) -> None:
    """The face moves 12 px and grows 2 % a frame; each search starts from the last box found."""
    box = None
    for step in range(8):
        height = round(300 * 1.02**step)
        x, y = 400 + 12 * step, 200 - 5 * step
        frame = background.copy()
        frame[y : y + height, x : x + height] = cv2.resize(astronaut, (height, height), interpolation=cv2.INTER_AREA)
        boxes = detector.detect(frame) if box is None else detector.detect_near(frame, box)
        assert boxes, f"face lost at step {step}"
        assert iou(boxes[0], shifted(FACE, height / 512, x, y)) > 0.5, (step, boxes[0])
        box = boxes[0]
    assert detector.detect_near(background, box) == [], "a face that left should not be found near its old place"


def test_two_faces_side_by_side(detector: FaceDetector, astronaut) -> None:
    boxes = detector.detect(np.concatenate([astronaut, astronaut], axis=1))
    assert len(boxes) == 2
    left, right = sorted(boxes, key=lambda b: b.x0)
    assert iou(left, FACE) > 0.5 and iou(right, shifted(FACE, 1, 512, 0)) > 0.5, boxes
    assert boxes[0].score >= boxes[1].score


def test_two_faces_one_above_the_other(detector: FaceDetector, astronaut) -> None:
    boxes = sorted(detector.detect(np.concatenate([astronaut, astronaut], axis=0)), key=lambda b: b.y0)
    assert len(boxes) == 2
    assert iou(boxes[0], FACE) > 0.5 and iou(boxes[1], shifted(FACE, 1, 0, 512)) > 0.5, boxes


def _lfw_frame(image: np.ndarray, margin: int) -> np.ndarray:
    """A 25x25 LFW crop (float, 0..1) as a 100x100 face with ``margin`` px of its edges around it, RGB."""
    grey = cv2.resize((image * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
    grey = cv2.copyMakeBorder(grey, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


@pytest.mark.parametrize(("model", "margin", "min_found"), [("short", 0, 90), ("full", 100, 85)])
def test_lfw_faces_found_and_non_faces_not(model: str, margin: int, min_found: int) -> None:
    """scikit-image's LFW subset: 100 face crops, then 100 crops of other things.

    'short' finds close-ups (the face fills the frame); 'full' finds the same faces once they
    fill a third of the frame.
    """
    images = data.lfw_subset()
    detector = FaceDetector(model)
    found = [detector.detect(_lfw_frame(image, margin)) for image in images]
    centre = 50 + margin
    hits = sum(
        bool(b) and abs((b[0].x0 + b[0].x1) / 2 - centre) < 15 and abs((b[0].y0 + b[0].y1) / 2 - centre) < 20
        for b in found[:100]
    )
    assert hits >= min_found
    assert sum(bool(b) for b in found[100:]) <= 3


@pytest.mark.parametrize(("model", "max_false"), [("short", 1), ("full", 0)])
def test_no_face_in_blank_or_noise(model: str, max_false: int) -> None:
    """Blank frames never show a face; of eight 720p white-noise frames, 'short' (whose tiles
    zoom into the noise) saw a face in one (seed 0, score 0.52), 'full' in none."""
    detector = FaceDetector(model)
    assert detector.detect(np.zeros((720, 1280, 3), np.uint8)) == []
    assert detector.detect(np.full((480, 640, 3), 200, np.uint8)) == []
    noise = [np.random.default_rng(seed).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for seed in range(8)]
    assert sum(len(detector.detect(frame)) for frame in noise) <= max_false


@pytest.mark.parametrize("shape", [(1, 1, 3), (10, 10, 3), (10, 4000, 3), (4000, 10, 3), (100, 250, 3), (64, 48, 3)])
def test_any_frame_size(detector: FaceDetector, shape: tuple[int, int, int]) -> None:
    assert detector.detect(np.full(shape, 128, np.uint8)) == []


def test_wide_frame_maps_back_to_frame_pixels(detector: FaceDetector, astronaut) -> None:
    """A 3:1 frame (three tiles) and a strided view of it give boxes in the frame's own pixels."""
    frame = np.zeros((512, 1536, 3), np.uint8)
    frame[:, 1024:] = astronaut
    boxes = detector.detect(frame[:, ::1])
    assert len(boxes) == 1 and iou(boxes[0], shifted(FACE, 1, 1024, 0)) > 0.5, boxes


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((0, 64, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=["grey", "rgba", "float", "empty", "list"],
)
def test_bad_frames_are_refused(detector: FaceDetector, bad) -> None:
    with pytest.raises(ValueError, match=r"uint8|empty"):
        detector.detect(bad)
    if not (isinstance(bad, np.ndarray) and bad.size == 0):
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            crop_face(bad, FaceBox(0, 0, 10, 10, 1.0), CropSpec())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="model"):
        FaceDetector("medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_score"):
        FaceDetector(min_score=1.5)
    with pytest.raises(ValueError):
        CropSpec(size=0)
    with pytest.raises(ValueError):
        CropSpec(scale=0.0)


def test_anchors_match_mediapipe_layout() -> None:
    short = ssd_anchors(128, (8, 16, 16, 16), True)
    full = ssd_anchors(192, (4,), False)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # 16x16 cells with 2 anchors each, then 8x8 cells with 6, row-major; centres at cell centres.
    np.testing.assert_allclose(short[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    np.testing.assert_allclose(short[512:519], [[1 / 16, 1 / 16]] * 6 + [[3 / 16, 1 / 16]])
    np.testing.assert_allclose(full[[0, 1, 48, -1]], [[1 / 96, 1 / 96], [3 / 96, 1 / 96], [1 / 96, 3 / 96], [95 / 96, 95 / 96]])


# --- crops -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "shape"),
    [(CropSpec(), (64, 64)), (CropSpec(size=48, grey=False), (48, 48, 3)), (CropSpec(size=7, scale=2.0), (7, 7))],
)
def test_crop_shape_and_dtype(detector: FaceDetector, astronaut, spec: CropSpec, shape: tuple[int, ...]) -> None:
    crop = crop_face(astronaut, detector.detect(astronaut)[0], spec)
    assert crop.shape == shape == spec.shape and crop.dtype == np.uint8


def test_crop_is_the_scaled_square_around_the_box(astronaut) -> None:
    box = FaceBox(180.0, 70.0, 280.0, 170.0, 0.9)  # side 100 -> 125 px square at 167.5..292.5
    spec = CropSpec(size=64, grey=False, scale=1.25)
    expected = cv2.resize(astronaut[58:183, 168:293], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop_face(astronaut, box, spec), expected)
    grey = crop_face(astronaut, box, dataclasses.replace(spec, grey=True))
    luma = cv2.cvtColor(astronaut[58:183, 168:293], cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(grey, cv2.resize(luma, (64, 64), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize(
    "box",
    [FaceBox(-30, -20, 50, 60, 0.9), FaceBox(460, 470, 530, 540, 0.9), FaceBox(-100, -100, 700, 700, 0.9)],
    ids=["top-left", "bottom-right", "larger-than-frame"],
)
def test_crop_at_frame_edge_is_padded_with_edge_pixels(astronaut, box: FaceBox) -> None:
    spec = CropSpec(size=32, grey=False, scale=1.5)
    crop = crop_face(astronaut, box, spec)
    assert crop.shape == (32, 32, 3)
    side = round(1.5 * max(box.width, box.height))
    x0, y0 = (math.floor((a + b - side) / 2 + 0.5) for a, b in ((box.x0, box.x1), (box.y0, box.y1)))
    pad = side
    padded = np.pad(astronaut, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    expected = cv2.resize(padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side], (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crop, expected)


def test_crop_of_a_box_outside_the_frame_is_refused(astronaut) -> None:
    with pytest.raises(ValueError, match="outside"):
        crop_face(astronaut, FaceBox(600, 600, 700, 700, 0.9), CropSpec())


def test_crop_is_centred_on_the_face(detector: FaceDetector, astronaut) -> None:
    """Detecting again in the crop finds the face in its middle, filling 1/scale of it."""
    spec = CropSpec(size=256, grey=False)
    crop = crop_face(astronaut, detector.detect(astronaut)[0], spec)
    again = FaceDetector("short").detect(crop)
    assert again, "no face in the crop"
    box = again[0]
    assert abs((box.x0 + box.x1) / 2 - 128) < 16 and abs((box.y0 + box.y1) / 2 - 128) < 16, box
    assert 0.6 < box.width / (256 / spec.scale) < 1.4, box


def test_facebox_and_cropspec_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FaceBox(0, 0, 1, 1, 1.0).x0 = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CropSpec().size = 32  # type: ignore[misc]

"""Face detection on 1280x720 frames: BlazeFace (short, full; whole frame or tiled) vs a Haar cascade.

Prints milliseconds per frame, everything included (BlazeFace: resizing, letterboxing, inference,
decoding, non-maximum suppression; Haar: conversion to grey, downscaling, the cascade), and how
many of the test frames' faces each finds, with the ratios to the Haar cascade at half size.

Test frames are real photos: scikit-image's astronaut (Eileen Collins) pasted whole, 200 to 400
px tall (her face 35 to 80 px wide), at random places into 16 faceless 1280x720 backgrounds (12
photos shipped with scikit-image, 4 of smooth random colours); her face cropped as the sample
videos show it (100 to 300 px tall); two astronauts side by side; the backgrounds alone, black and
white noise. A face counts as found when a box overlaps the hand-marked face by IoU > 0.5; every
other box is a false positive.

    python benchmarks/face_detection.py [--repeats 5] [--verbose]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from skimage import data

from preprocessing.faces import FaceDetector

Box = tuple[float, float, float, float]
# Hand-marked face in the 512x512 astronaut photo (x0, y0, x1, y1): hairline to chin, cheek to cheek.
ASTRONAUT_FACE: Box = (185.0, 77.0, 275.0, 185.0)
FACE_CROP = (150, 20, 330, 210)  # x0, y0, x1, y1 of the face as preprocessing.synthesis shows it
W, H = 1280, 720


@dataclass
class Frame:
    name: str
    rgb: np.ndarray
    faces: list[Box]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# Photos shipped inside scikit-image (no download), none showing a face.
PHOTOS = ("rocket", "coffee", "horse", "text", "brick", "grass", "gravel", "hubble_deep_field",
          "immunohistochemistry", "retina", "moon", "page")


def backgrounds() -> dict[str, np.ndarray]:
    """1280x720 RGB backgrounds without a face: the photos, and smooth random colours."""
    out = {}
    for name in PHOTOS:
        img = getattr(data, name)()
        img = img.astype(np.uint8) * 255 if img.dtype == bool else img
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img[..., :3]
        out[name] = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    for i in range(4):
        coarse = rng.integers(60, 200, (H // 16 + 1, W // 16 + 1, 3), dtype=np.uint8)
        out[f"colours {i}"] = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    return out


def paste(background: np.ndarray, image: np.ndarray, height: int, x: int, y: int) -> tuple[np.ndarray, float]:
    """``image`` resized to ``height`` rows and pasted at (x, y); returns the frame and the scale."""
    scale = height / image.shape[0]
    small = cv2.resize(image, (round(image.shape[1] * scale), height), interpolation=cv2.INTER_AREA)
    frame = background.copy()
    frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    return frame, scale


def test_frames(seed: int = 0) -> list[Frame]:
    """On each background: the astronaut 200/250/300/350/400 px tall and her face crop 100/200/300
    px tall, each at a random place; two astronauts 300 px tall; the background alone. Then a
    black frame and a white-noise frame."""
    rng = np.random.default_rng(seed)
    astronaut = data.astronaut()
    cx0, cy0, cx1, cy1 = FACE_CROP
    crop = astronaut[cy0:cy1, cx0:cx1]
    crop_face = (ASTRONAUT_FACE[0] - cx0, ASTRONAUT_FACE[1] - cy0, ASTRONAUT_FACE[2] - cx0, ASTRONAUT_FACE[3] - cy0)
    frames = []
    for bg_name, bg in backgrounds().items():
        kinds = (("astronaut", astronaut, ASTRONAUT_FACE, (200, 250, 300, 350, 400)), ("face crop", crop, crop_face, (100, 200, 300)))
        for kind, image, face, heights in kinds:
            for height in heights:
                width = round(image.shape[1] * height / image.shape[0])
                x, y = int(rng.integers(0, W - width)), int(rng.integers(0, H - height))
                rgb, s = paste(bg, image, height, x, y)
                frames.append(Frame(f"{kind} {height}px on {bg_name}", rgb, [_moved(face, s, x, y)]))
        two, faces = bg, []
        for x in (240, 740):
            two, s = paste(two, astronaut, 300, x, 200)
            faces.append(_moved(ASTRONAUT_FACE, s, x, 200))
        frames.append(Frame(f"two astronauts 300px on {bg_name}", two, faces))
        frames.append(Frame(f"no face: {bg_name}", bg, []))
    frames.append(Frame("no face: black", np.zeros((H, W, 3), np.uint8), []))
    frames.append(Frame("no face: white noise", rng.integers(0, 256, (H, W, 3), dtype=np.uint8), []))
    return frames


def _moved(box: Box, scale: float, x: float, y: float) -> Box:
    return (box[0] * scale + x, box[1] * scale + y, box[2] * scale + x, box[3] * scale + y)


def haar(half: bool) -> Callable[[np.ndarray], list[Box]]:
    """OpenCV's frontal-face Haar cascade on grey, full or half size; faces from 48 frame px up
    (the cascade's 24 px window at half size), about the smallest that tiled BlazeFace finds."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    f = 2 if half else 1

    def detect(rgb: np.ndarray) -> list[Box]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if half:
            grey = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(48 // f, 48 // f))
        return [(x * f, y * f, (x + w) * f, (y + h) * f) for x, y, w, h in found]

    return detect


def blazeface(model: str, tiles: bool) -> Callable[[np.ndarray], list[Box]]:
    detector = FaceDetector(model, tiles=tiles)  # type: ignore[arg-type]
    return lambda rgb: [(b.x0, b.y0, b.x1, b.y1) for b in detector.detect(rgb)]


def group(name: str) -> str:
    """The row of the detection table a test frame belongs to."""
    return "no face" if name.startswith("no face") else name.split(" on ")[0]


def score(detect: Callable[[np.ndarray], list[Box]], frames: list[Frame]) -> tuple[dict[str, list[int]], list[str]]:
    """Per group [faces found, faces, false positives]; frames with a miss or a false positive."""
    counts: dict[str, list[int]] = {}
    wrong = []
    for frame in frames:
        boxes = detect(frame.rgb)
        hits = sum(any(iou(b, face) > 0.5 for b in boxes) for face in frame.faces)
        extra = sum(not any(iou(b, face) > 0.5 for face in frame.faces) for b in boxes)
        row = counts.setdefault(group(frame.name), [0, 0, 0])
        row[0], row[1], row[2] = row[0] + hits, row[1] + len(frame.faces), row[2] + extra
        if hits < len(frame.faces) or extra:
            wrong.append(f"{frame.name} ({hits}/{len(frame.faces)}, {extra} false)")
    return counts, wrong


def timings(detectors: dict[str, Callable[[np.ndarray], list[Box]]], frames: list[np.ndarray], repeats: int) -> dict[str, float]:
    """Median ms per call; detectors take turns frame by frame, so that a change of load on the
    machine affects all alike."""
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for detect in detectors.values():
        detect(frames[0])  # warm up
    for _ in range(repeats):
        for rgb in frames:
            for name, detect in detectors.items():
                t = time.perf_counter()
                detect(rgb)
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="passes over the timing frames")
    parser.add_argument("--verbose", action="store_true", help="list the frames each detector gets wrong")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core each, as the BlazeFace interpreter runs
    frames = test_frames()
    timed = [f.rgb for f in frames if f.name.startswith("astronaut 300px")]  # one per background
    detectors = {
        "BlazeFace short": blazeface("short", tiles=False),
        "BlazeFace short, tiled": blazeface("short", tiles=True),
        "BlazeFace full": blazeface("full", tiles=False),
        "BlazeFace full, tiled (default)": blazeface("full", tiles=True),
        "Haar, 1280x720 grey": haar(half=False),
        "Haar, 640x360 grey": haar(half=True),
    }
    ms = timings(detectors, timed, args.repeats)
    scores = {name: score(d, frames) for name, d in detectors.items()}
    ref = ms["Haar, 640x360 grey"]
    print(f"ms per 1280x720 frame: median of {args.repeats * len(timed)} calls each, one thread, all steps included")
    print(f"{'':32s} {'ms':>7s} {'/ Haar 640x360':>15s}")
    for name, t in ms.items():
        print(f"{name:32s} {t:7.2f} {t / ref:15.3f}")
    groups = list(next(iter(scores.values()))[0])
    names = ["short", "short+t", "full", "full+t", "Haar", "Haar/2"]
    print(f"\n{len(frames)} frames; faces found (IoU > 0.5 with the marked face) / faces, + other boxes")
    print(f"{'':22s}" + "".join(f"{n:>13s}" for n in names))
    for g in [*groups, "all"]:
        cells = [np.sum(list(c.values()), axis=0) if g == "all" else c[g] for c, _ in scores.values()]
        print(f"{g:22s}" + "".join(f"{'%d/%d +%d' % tuple(c):>13s}" for c in cells))
    if args.verbose:
        for name, (_, wrong) in scores.items():
            print(f"\n{name}:", *wrong, sep="\n    ")

if __name__ == "__main__":
    main()

"""Does serving's face crop frame a face as FER-2013 does?

FER-2013's images are face-centred 48x48 crops; serving cuts a square of ``CropSpec.scale``
times BlazeFace's box around each face it finds. On FER-2013 test images (real face photos),
each put in the middle of a larger canvas (its edges repeated, as a face in a frame), this finds
the face with BlazeFace as serving does and prints:

- the image's side divided by the box's longer side, the scale at which serving's crop would be
  exactly the FER-2013 image (median and quartiles);
- the fer port's accuracy on the images as they are (the training crop) and on serving's crops
  at scales 1.0, 1.25 (the shipped setting) and 1.5, with how often each agrees with the former.

    python benchmarks/face_crop_mapping.py [--images 700] [--data ../shared/data/fer2013]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from models.emotions import FER2013
from models.face_expression import load_fer_mini_xception
from preprocessing.faces import CropSpec, FaceDetector, crop_face, whole_image_crop

ROOT = Path(__file__).resolve().parents[1]
CANVAS, FACE = 256, 128  # the image is drawn at 128 px in a 256 px frame
SCALES = (1.0, 1.15, 1.25, 1.5)


def test_images(data: Path, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` PublicTest/PrivateTest images spread over the classes, as RGB, and their labels."""
    paths = [(p, FER2013.index(p.parent.name)) for p in sorted((data / "test").glob("*/*.jpg"))]
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int)]
    images = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2RGB) for p, _ in picked]
    return images, np.array([label for _, label in picked])


def framed(image: np.ndarray) -> np.ndarray:
    big = cv2.resize(image, (FACE, FACE), interpolation=cv2.INTER_CUBIC)
    pad = (CANVAS - FACE) // 2
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def predict(model: torch.nn.Module, crops: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(crops))).argmax(1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--images", type=int, default=700)
    a = p.parse_args()
    images, labels = test_images(a.data, a.images)
    detector, model = FaceDetector("short"), load_fer_mini_xception()
    found = [(i, detector.detect(framed(img))) for i, img in enumerate(images)]
    found = [(i, boxes[0]) for i, boxes in found if boxes]
    ratios = np.array([FACE / max(box.width, box.height) for _, box in found])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    print(f"BlazeFace found a face in {len(found)} of {len(images)} FER-2013 test images")
    print(f"image side / box side: median {median:.2f} (quartiles {q1:.2f}, {q3:.2f}); serving's crop scale is {CropSpec().scale}")
    keep = [i for i, _ in found]
    whole = predict(model, [whole_image_crop(images[i], CropSpec()) for i in keep])
    truth = labels[keep]
    print(f"\nfer port on the same {len(keep)} images:")
    print(f"  the image as it is (training's crop):  accuracy {np.mean(whole == truth):6.1%}")
    for scale in SCALES:
        crops = [crop_face(framed(images[i]), box, CropSpec(scale=scale)) for i, box in found]
        served = predict(model, crops)
        print(f"  serving's crop at scale {scale:<4}:         accuracy {np.mean(served == truth):6.1%}, "
              f"agrees with the image as it is {np.mean(served == whole):6.1%}")  # fmt: skip


if __name__ == "__main__":
    main()

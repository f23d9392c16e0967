"""The audio-video model at the paper's size: parameters, FLOPs and CPU time per 3.6 s window.

For each fusion variant (ia, it, lt) with the EfficientFace frame encoder on 15 RGB 224x224
crops, and for the mini-Xception frame encoder on 15 grey 64x64 crops: parameters (trainable
in brackets), FLOPs of one window's forward pass as torch.utils.flop_counter counts them
(convolutions, matrix products and attention; a multiply-add counts as 2; batch norm,
activations and pooling are not counted), the frame encoder's share, and the median wall time of
a forward pass in eval mode, batch 1 and batch 8 (per window). Then the time to compute one
window's MFCCs (preprocessing.audio_features.mfcc, 79,380 samples), and one training epoch on the
synthetic set the shipped weights were trained on (`emofuse train av --data synthetic --classes 5
--face-encoder mini_xception --size small --speakers 12 --per-class 4`), validation included.

    python benchmarks/av_model.py [--threads 1] [--repeats 5]

One thread by default: on a shared 2-core machine, two OpenMP threads wait at every barrier for
a core another process holds, and a window then takes seconds instead of a tenth of one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from models.av import FUSIONS, AVConfig, AVModel
from models.parameters import count_parameters
from preprocessing.audio_features import mfcc
from preprocessing.faces import CropSpec
from training.av import SMALL, TrainConfig, fit
from training.ravdess import EMOTIONS_5
from training.synthetic_av import SyntheticSpec, make_dataset
from training.trials import ordered_split


def flops(model: AVModel, faces: torch.Tensor, feats: torch.Tensor) -> tuple[int, int]:
    """FLOPs of the whole forward pass and of its frame encoder, for these inputs."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(faces, feats)
    by_module = counter.get_flop_counts()
    encoder = sum(by_module.get("AVModel.face_encoder", {}).values())
    return counter.get_total_flops(), encoder


def inputs(config: AVConfig, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 256, (batch, config.n_frames, *config.crop.shape), generator=g).to(torch.uint8)
    return faces, torch.randn(batch, config.n_mfcc, config.mfcc_frames, generator=g) * 40


def training_epoch() -> tuple[float, float, int, int]:
    """Seconds to generate the shipped weights' synthetic set, seconds of one epoch on it, training
    and validation windows."""
    start = time.perf_counter()
    data = make_dataset(SyntheticSpec(labels=EMOTIONS_5, crop=CropSpec(size=64, grey=True)), range(12), 4, seed=0)
    generate = time.perf_counter() - start
    split = ordered_split(data.speakers, n_val=2, n_test=3).indices(data.speakers)  # as emofuse train av splits speakers
    config = AVConfig(n_classes=5, face_encoder="mini_xception", face_size=64, **SMALL)
    train, val = data.subset(split["train"]), data.subset(split["val"])
    _, history = fit(train, val, TrainConfig(epochs=1, threads=torch.get_num_threads(), model=config))
    return generate, history[0].seconds, len(train), len(val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} CPU threads, median of {a.repeats}")
    variants = [(f"{f} efficientface 224 RGB", AVConfig(fusion=f)) for f in FUSIONS]
    variants.append(("ia mini-Xception 64 grey (frozen)", AVConfig(face_encoder="mini_xception")))
    print(f"{'variant':34s} {'parameters (trainable)':>24s} {'GFLOPs':>7s} {'encoder':>8s} {'ms b=1':>8s} {'ms/win b=8':>11s}")
    for name, config in variants:
        model = AVModel(config).eval()
        one, eight = inputs(config, 1), inputs(config, 8)
        total, encoder = flops(model, *one)
        with torch.no_grad():
            t1 = median_seconds(lambda model=model, one=one: model(*one), a.repeats)
            t8 = median_seconds(lambda model=model, eight=eight: model(*eight), a.repeats) / 8
        params = f"{count_parameters(model):,} ({count_parameters(model, trainable_only=True):,})"
        print(f"{name:34s} {params:>24s} {total / 1e9:7.3f} {encoder / total:7.1%} {t1 * 1e3:8.1f} {t8 * 1e3:11.1f}")
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 79_380).astype(np.float32)
    batch = np.stack([audio] * 8)
    t1 = median_seconds(lambda: mfcc(audio), a.repeats)
    t8 = median_seconds(lambda: mfcc(batch), a.repeats) / 8
    print(f"MFCC (10 x 156) of one 3.6 s window: {t1 * 1e3:.1f} ms; in a batch of 8: {t8 * 1e3:.1f} ms per window")
    generate, epoch, n_train, n_val = training_epoch()
    print(f"synthetic set of the shipped weights (12 speakers x 5 classes x 4 windows) generated in {generate:.1f} s")
    print(f"training epoch, ia mini-Xception small: {epoch:.2f} s ({n_train} training windows, batch 16, AdamW; "
          f"validation on {n_val} windows included)")


if __name__ == "__main__":
    main()

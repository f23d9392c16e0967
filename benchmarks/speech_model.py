"""The speech emotion CNN on the CPU: size, FLOPs, forward time, log-mel time, training epoch time.

Uses the shipped weights (``models/weights/speech``; timings do not depend on the weights). Prints:

- parameters and FLOPs of one window's forward pass (``torch.utils.flop_counter.FlopCounterMode``:
  convolutions and the linear layer, 2 FLOPs per multiply-add; batch norm, pooling and ReLU are
  not counted);
- forward time per window at batch 1 and batch 32 (median of ``--repeats`` runs after a warm-up);
- log-mel time per window (:func:`preprocessing.audio_features.log_mel`), one window and 32 at once;
- one training epoch as :mod:`training.speech` runs it (:func:`training.speech.fit`, one epoch):
  660 clips of 3.7 s (the RAVDESS training split's count and mean length; generated audio, the
  timing does not depend on it), windows cut at random with speed perturbation, log-mel,
  SpecAugment, mixup, forward, backward, AdamW step, then the batch-norm recalibration on clean
  windows, and validation on 8 clips (40 windows, a fraction of a second).

    python benchmarks/speech_model.py [--threads 1] [--repeats 20]

Timings depend on the machine and on what else runs on it; the output names the thread count.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from models.parameters import count_parameters
from models.speech import load_speech
from preprocessing.audio_features import N_FRAMES, SAMPLE_RATE, WINDOW_SAMPLES, log_mel
from training.speech import TrainConfig, even_windows, features, fit

TRAIN_CLIPS = 660  # RAVDESS training actors' clips
CLIP_S = 3.7  # mean RAVDESS clip length in seconds


def training_epoch_s(cfg: TrainConfig) -> float:
    """Seconds for one CNN epoch of :func:`training.speech.fit` on generated clips, recalibration
    and a small validation included."""
    rng = np.random.default_rng(0)
    clips = [(0.05 * rng.standard_normal(int(CLIP_S * SAMPLE_RATE))).astype(np.float32) for _ in range(TRAIN_CLIPS)]
    y = rng.integers(0, 8, TRAIN_CLIPS)
    x_val = features("cnn", even_windows(clips[:8], cfg.eval_crops), cfg)
    t0 = time.perf_counter()
    fit("cnn", clips, y, x_val, y[:8], replace(cfg, epochs=1), seed=0)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (training uses 1)")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, card, spec = load_speech()
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal((32, WINDOW_SAMPLES))).astype(np.float32)
    x = torch.from_numpy(log_mel(audio, spec))  # (32, 64, 156)

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    print(f"speech CNN {model.config.to_dict()}, torch {torch.__version__}, {a.threads} thread(s)")
    print(f"parameters            {count_parameters(model):,}")
    print(f"forward FLOPs/window  {counter.get_total_flops() / 1e6:,.1f} M  (input 1 x {spec.n_mels} x {N_FRAMES})")
    with torch.no_grad():
        one = median_seconds(lambda: model(x[:1]), a.repeats)
        batch = median_seconds(lambda: model(x), a.repeats)
    print(f"forward, batch 1      {one * 1e3:8.2f} ms/window")
    print(f"forward, batch 32     {batch / 32 * 1e3:8.2f} ms/window  ({batch * 1e3:.1f} ms/batch)")
    lm_one = median_seconds(lambda: log_mel(audio[0], spec), a.repeats)
    lm_batch = median_seconds(lambda: log_mel(audio, spec), max(3, a.repeats // 4))
    print(f"log-mel, 1 window     {lm_one * 1e3:8.2f} ms/window")
    print(f"log-mel, 32 at once   {lm_batch / 32 * 1e3:8.2f} ms/window")
    epoch = training_epoch_s(TrainConfig(cnn=model.config))
    print(f"training epoch        {epoch:8.1f} s  ({TRAIN_CLIPS} clips, batch 32: windows, log-mel, augmentation, steps, "
          "BN recalibration, validation)")  # fmt: skip
    for member in card.metrics.get("training", {}).get("members", []):
        per_epoch = member["training_time_s"] / member["epochs_run"]
        print(f"card: seed {member['seed']} trained {per_epoch:8.1f} s/epoch ({member['epochs_run']} epochs, validation "
              f"included; {card.metrics['training']['threads']} thread(s), shared machine)")  # fmt: skip


if __name__ == "__main__":
    main()

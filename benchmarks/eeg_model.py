"""The EEG model (EEGNet) on the CPU: size, FLOPs, forward time, EEG preprocessing time, training epoch time.

Random weights (timings do not depend on them). Prints:

- parameters and FLOPs of one window's forward pass for three montages: 14 channels (the
  synthetic set), 32 (DEAP) and 62 (SEED), 5.25 s windows at 128 Hz
  (``torch.utils.flop_counter.FlopCounterMode``: convolutions and the linear layer, 2 FLOPs per
  multiply-add; batch norm, ELU, pooling and padding are not counted);
- forward time per window at batch 1 and batch 32 (median of ``--repeats`` runs after a warm-up);
- EEG preprocessing per minute of 64-channel EEG at 512 Hz: band-pass + 50 Hz notch (and its
  harmonics), resampling to 128 Hz, windows of 5.25 s (:func:`preprocessing.eeg.eeg_windows`),
  each stage alone and all together, and per-channel standardisation;
- one training epoch of :func:`training.loop.fit` (validation included) on the training
  subjects of ``emofuse train eeg --data synthetic``'s default set (14 subjects, 5 classes,
  4 trials of 21 s each per class and subject, 4 windows per trial), and the time to generate it.

    python benchmarks/eeg_model.py [--threads 1] [--repeats 20]

Timings depend on the machine and on what else runs on it; the output names the thread count.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from models.eeg import EEGNet, EEGNetConfig
from models.parameters import count_parameters
from preprocessing.eeg import EEGRecording, EEGSpec, channel_stats, eeg_windows, filter_eeg, resample_eeg, standardise
from training.loop import FitConfig, fit
from training.synthetic_eeg import SyntheticEEGSpec, make_eeg_dataset
from training.trials import subject_split

MONTAGES = {"synthetic, 14 ch": 14, "DEAP, 32 ch": 32, "SEED, 62 ch": 62}


def model_figures(channels: int, spec: EEGSpec, repeats: int) -> tuple[int, float, float, float]:
    """Parameters, forward FLOPs per window, seconds per window at batch 1 and at batch 32."""
    torch.manual_seed(0)
    model = EEGNet(EEGNetConfig(channels=channels, samples=spec.samples, n_classes=5, rate=spec.rate)).eval()
    x = torch.randn(32, channels, spec.samples)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    with torch.no_grad():
        one = median_seconds(lambda: model(x[:1]), repeats)
        batch = median_seconds(lambda: model(x), repeats) / 32
    return count_parameters(model), counter.get_total_flops(), one, batch


def preprocessing_figures(spec: EEGSpec, repeats: int) -> dict[str, float]:
    """Seconds per minute of 64-channel EEG at 512 Hz for each stage and the whole."""
    rate, minutes = 512.0, 1.0
    data = np.random.default_rng(0).normal(0, 20, (64, int(minutes * 60 * rate)))
    recording = EEGRecording(data, rate, tuple(f"EEG {i}" for i in range(64)), Path("benchmark"))
    filtered = filter_eeg(data, rate, spec)
    windows = eeg_windows(recording, spec)
    stats = channel_stats(windows)
    runs = max(3, repeats // 4)
    return {
        "band-pass + notch at 512 Hz": median_seconds(lambda: filter_eeg(data, rate, spec), runs),
        "resample 512 -> 128 Hz": median_seconds(lambda: resample_eeg(filtered, rate, spec.rate), runs),
        "all of eeg_windows (filter, resample, cut)": median_seconds(lambda: eeg_windows(recording, spec), runs),
        "standardise the windows": median_seconds(lambda: standardise(windows, *stats), runs),
    }


def training_epoch(spec: EEGSpec) -> tuple[float, float, int, int]:
    """Seconds to generate the default synthetic set, seconds of one epoch, training and validation windows."""
    t0 = time.perf_counter()
    data = make_eeg_dataset(SyntheticEEGSpec(), range(1, 15), 4, eeg=spec)
    generate = time.perf_counter() - t0
    idx = subject_split(data.subjects.tolist()).indices(data.subjects)
    stats = channel_stats(data.windows[idx["train"]])
    x = standardise(data.windows, *stats)
    torch.manual_seed(0)
    model = EEGNet(EEGNetConfig(channels=len(data.channels), samples=spec.samples, n_classes=len(data.label_names), rate=spec.rate))
    _, history = fit(model, ((x[idx["train"]],), data.labels[idx["train"]]), ((x[idx["val"]],), data.labels[idx["val"]]),
                     FitConfig(epochs=1))  # fmt: skip
    return generate, history[0].seconds, len(idx["train"]), len(idx["val"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (training uses 2 by default)")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    spec = EEGSpec()
    print(f"EEGNet-8,2, {spec.window_s:g} s windows at {spec.rate:g} Hz ({spec.samples} samples), 5 classes, "
          f"torch {torch.__version__}, {a.threads} thread(s)")  # fmt: skip
    print(f"{'montage':<18} {'parameters':>10} {'MFLOPs/window':>14} {'ms/window b=1':>14} {'ms/window b=32':>15} {'b=1 / b=32':>10}")
    for name, channels in MONTAGES.items():
        params, flops, one, batch = model_figures(channels, spec, a.repeats)
        print(f"{name:<18} {params:>10,} {flops / 1e6:>14.2f} {one * 1e3:>14.3f} {batch * 1e3:>15.3f} {one / batch:>10.1f}")

    stages = preprocessing_figures(spec, a.repeats)
    whole = stages["all of eeg_windows (filter, resample, cut)"]
    print("EEG preprocessing, 1 minute of 64-channel EEG at 512 Hz (60 s, 1,966,080 samples):")
    for name, seconds in stages.items():
        print(f"  {name:<44} {seconds * 1e3:8.1f} ms  ({seconds / whole:.2f} x all; {60 / seconds:,.0f} s of EEG per s)")

    generate, epoch, n_train, n_val = training_epoch(spec)
    print(f"synthetic set: 14 subjects x 5 classes x 4 trials, generated and windowed in {generate:.1f} s")
    print(f"training epoch        {epoch:8.2f} s  ({n_train} training windows, batch 32, AdamW; validation on {n_val} windows included)")


if __name__ == "__main__":
    main()

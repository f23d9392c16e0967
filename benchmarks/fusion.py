"""The trial fusions: parameters, FLOPs and CPU time per trial, and the CNN's training time per epoch.

For the fusions that ``emofuse train fusion --out RUN`` wrote (WAVER, XGBoost, the fusion CNN in
PyTorch and exported to ONNX Runtime): parameters (WAVER: its two weights; XGBoost: the nodes
of its trees), FLOPs of one trial (the CNN: as torch.utils.flop_counter counts convolutions and
matrix products, a multiply-add counting 2; WAVER: counted by hand, below; XGBoost: the node
comparisons of one trial's path through every tree, not floating-point work), and the median wall
time of judging trials from their window logits, batch 1 and batch 64 (per trial). Then the
CNN's training time per epoch on the run's validation trials (the synthetic set when the run was
``--data synthetic``), with training.loop.fit as training.fusion calls it.

    python benchmarks/fusion.py RUN [--threads 1] [--repeats 20] [--epochs 20]

One thread by default, as the other benchmarks (a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from export.onnx import export_onnx
from models.fusion import FusionCNN, XGBoostFusion, trial_matrix, waver
from models.fusion import load_fusions
from training.fusion import TrialLogits
from training.loop import FitConfig, fit


def waver_flops(av_windows: int, eeg_windows: int, classes: int) -> int:
    """Arithmetic of WAVER on one trial: window means (adds, a divide per class), a softmax per
    modality (subtract the max, exp, sum, divide), the weighted sum (a multiply and an add per
    class and modality); weight normalisation and the argmax are a handful more."""
    means = (av_windows + eeg_windows) * classes + 2 * classes
    softmax = 2 * 4 * classes
    weighted = 2 * 2 * classes
    return means + softmax + weighted + 6


def xgboost_size(fusion: XGBoostFusion) -> tuple[int, int]:
    """Nodes of all trees kept, and node comparisons on one trial's path (summed over the trees,
    each tree's mean leaf depth)."""
    nodes, comparisons = 0, 0.0
    for text in fusion.model.get_booster()[: fusion.rounds].get_dump(dump_format="json"):
        depths = _leaf_depths(json.loads(text))
        nodes += 2 * len(depths) - 1  # a binary tree
        comparisons += float(np.mean(depths))
    return nodes, round(comparisons)


def _leaf_depths(node: dict, depth: int = 0) -> list[int]:
    if "children" not in node:
        return [depth]
    return [d for child in node["children"] for d in _leaf_depths(child, depth + 1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="folder written by emofuse train fusion")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20, help="CNN epochs to time")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    fusions = load_fusions(a.run)
    logits = TrialLogits.load(a.run / "fusion.logits.npz")
    metrics = json.loads((a.run / "fusion_cnn.card.json").read_text())["metrics"]
    batch_size, lr, weight_decay = (metrics["config"][k] for k in ("batch_size", "lr", "weight_decay"))  # the run's TrainConfig
    cnn, C = fusions.cnn.eval(), len(logits.label_names)
    print(f"torch {torch.__version__}, {a.threads} CPU thread(s), median of {a.repeats}; {len(logits)} trials in {a.run}")

    def judge(batch: int) -> dict:
        part = logits.subset(np.arange(batch) % len(logits))
        matrix = torch.from_numpy(trial_matrix(**part.kwargs())[0])
        features = XGBoostFusion.features(**part.kwargs())
        return {
            "WAVER (numpy)": lambda: waver(weights=fusions.weights, **part.kwargs()),
            "XGBoost": lambda: fusions.xgboost.predict(*features),
            "CNN (PyTorch)": lambda: cnn(matrix),
            "CNN (ONNX Runtime)": lambda: session.run(None, {"WINDOW_LOGITS": matrix.numpy()}),
        }

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(cnn, torch.zeros(1, 1, cnn.config.rows, C), Path(tmp) / "fusion_cnn.onnx", input_name="WINDOW_LOGITS",
                           output_name="TRIAL_LOGITS")  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = a.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        cnn(torch.zeros(1, 1, cnn.config.rows, C))
    nodes, comparisons = xgboost_size(fusions.xgboost)
    size = {
        "WAVER (numpy)": (2, f"{waver_flops(cnn.config.av_windows, cnn.config.eeg_windows, C)}"),
        "XGBoost": (nodes, f"{comparisons} comparisons ({fusions.xgboost.rounds} rounds x {C} trees)"),
        "CNN (PyTorch)": (sum(q.numel() for q in cnn.parameters()), f"{counter.get_total_flops():,}"),
        "CNN (ONNX Runtime)": (sum(q.numel() for q in cnn.parameters()), f"{counter.get_total_flops():,}"),
    }
    one, many = judge(1), judge(64)
    print(f"{'fusion':20s} {'parameters':>11s} {'FLOPs per trial':>36s} {'ms b=1':>8s} {'ms/trial b=64':>14s}")
    with torch.no_grad():
        for name, (params, flops) in size.items():
            t1 = median_seconds(one[name], a.repeats)
            t64 = median_seconds(many[name], a.repeats) / 64
            print(f"{name:20s} {params:>11,} {flops:>36s} {t1 * 1e3:8.3f} {t64 * 1e3:14.4f}")

    val = logits.subset(np.isin(logits.subjects, metrics["validation"]["subjects"]["fit"]))
    x = trial_matrix(**val.kwargs())[0]
    torch.manual_seed(0)
    opt = FitConfig(epochs=a.epochs, patience=a.epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay)
    _, history = fit(FusionCNN(cnn.config), ((x,), val.labels), ((x,), val.labels), opt)
    per_epoch = history[-1].seconds / len(history)
    print(f"CNN training: {per_epoch * 1e3:.1f} ms per epoch over {len(val)} trials (batch {batch_size}, validation pass included), "
          f"{len(history)} epochs")  # fmt: skip


if __name__ == "__main__":
    main()

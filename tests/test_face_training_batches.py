"""The training batches of `emofuse train fer2013`: augmented as real faces vary, and distilled."""

from __future__ import annotations

import numpy as np
import torch

from training.fer2013 import Augment, Distil


def _batch(n: int = 6) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (n, 64, 64), dtype=np.uint8)
    teacher = rng.dirichlet(np.ones(7), n).astype(np.float32)
    return crops, teacher, torch.arange(n) % 7


def test_augmented_crops_keep_their_shape_range_and_labels() -> None:
    crops, _, labels = _batch()
    (out,), targets = Augment()((crops,), labels, np.random.default_rng(0))
    assert out.shape == (6, 64, 64) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 255
    assert torch.equal(targets, labels)
    assert not torch.allclose(out, torch.from_numpy(crops).float()), "the crops changed"


def test_distilled_targets_mix_each_label_with_the_teachers_probabilities() -> None:
    crops, teacher, labels = _batch()
    (out,), targets = Distil(Augment(), weight=0.25)((crops, teacher), labels, np.random.default_rng(0))
    expected = 0.75 * torch.nn.functional.one_hot(labels, 7).float() + 0.25 * torch.from_numpy(teacher)
    assert torch.allclose(targets, expected) and torch.allclose(targets.sum(1), torch.ones(6))
    (same,), _ = Augment()((crops,), labels, np.random.default_rng(0))
    assert torch.equal(out, same), "the crops are augmented as without a teacher"

"""
Fusion of one trial: the window logits of the audio-video model and of the EEG model -> one verdict.

A trial (about 21 s) gives 6 audio-video windows (3.6 s, :class:`models.av.AVModel`) and 4 EEG
windows (5.25 s, the EEGNet of :mod:`models.eeg`), each judged on its own into logits over the same
classes. Three fusions turn them into one answer per trial, all of them in this file:

    AVER / WAVER  mean logits per modality -> softmax -> weighted sum of the two       (numpy)
    XGBoost       the two modalities' mean-logit softmaxes side by side (10 features) (xgboost)
    FusionCNN     the 10 x 5 matrix of window logits -> 2 conv, 2 dense layers        (PyTorch)

                  (B, 1, 10, 5)  rows: 6 AV windows then 4 EEG windows; columns: classes
    conv 32@2x2   (B, 32, 9, 4)    ReLU, max-pool (2, 1) -> (B, 32, 4, 4), dropout
    conv 64@3x3   (B, 64, 2, 2)    ReLU, max-pool (2, 1) -> (B, 64, 1, 2), dropout
    flatten       (B, 128) -> dense 64, ReLU, dropout -> dense 5: logits (B, 5)
    27,237 parameters (160 + 18,496 + 8,256 + 325)

Missing modalities. A trial may lack its face and voice (no video) or its EEG; every fusion then
answers from the other modality alone and says which modalities it used. WAVER gives the present
modality all the weight; XGBoost sees the missing modality's features as NaN, which its trees
route down a learnt default branch; the CNN sees the missing modality's rows as zeros (logits
that prefer no class) and is trained with modality dropout so that it answers from either half.
A trial with neither modality gets uniform probabilities and ``used`` all False.

References:
1) The issue "EEG and trial fusion" of this project (the CNN's layers, the 10 x 5 matrix).
2) T. Chen, C. Guestrin, "XGBoost: a scalable tree boosting system", KDD 2016 (sparsity-aware
   split finding: the default direction of missing values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.card import ModelCard
from models.checkpoint import read_checkpoint

__all__ = ["MODALITIES", "Fusions", "FusionCNN", "FusionConfig", "FusionResult", "XGBoostFusion", "aver", "modality_probabilities", "trial_matrix",
           "load_fusions", "waver"]  # fmt: skip

MODALITIES = ("av", "eeg")


class FusionResult(NamedTuple):
    probabilities: np.ndarray  # (B, classes), rows sum to 1
    used: np.ndarray  # (B, 2) bool: [av, eeg] took part in each answer


def _present(logits: np.ndarray | None, present: np.ndarray | None, B: int) -> np.ndarray:
    """(B,) bool: which trials have this modality (none if ``logits`` is None)."""
    if logits is None:
        return np.zeros(B, bool)
    if present is None:
        return np.ones(B, bool)
    present = np.asarray(present, bool)
    if present.shape != (B,):
        raise ValueError(f"a presence mask must have shape ({B},), one flag per trial, got {present.shape}.")
    return present


def _batch(av_logits: np.ndarray | None, eeg_logits: np.ndarray | None) -> tuple[int, int]:
    """Trials B and classes C of the given logits, checked to agree."""
    given = [np.shape(x) for x in (av_logits, eeg_logits) if x is not None]
    if not given:
        raise ValueError("give the window logits of at least one modality (av_logits or eeg_logits).")
    for shape in given:
        if len(shape) != 3:
            raise ValueError(f"window logits must have shape (B, windows, classes), got {shape}.")
    if len({(s[0], s[2]) for s in given}) > 1:
        raise ValueError(f"the two modalities disagree on trials or classes: av {given[0]}, eeg {given[-1]}.")
    return given[0][0], given[0][2]


def modality_probabilities(logits: np.ndarray) -> np.ndarray:
    """One modality's verdict per trial: the softmax of its mean window logits.

    Parameters
    ----------
    logits : ndarray, shape (B, windows, classes)

    Returns
    -------
    ndarray of float64, shape (B, classes)
    """
    mean = np.asarray(logits, np.float64).mean(axis=1)
    e = np.exp(mean - mean.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def waver(
    av_logits: np.ndarray | None,
    eeg_logits: np.ndarray | None,
    weights: tuple[float, float],
    *,
    av_present: np.ndarray | None = None,
    eeg_present: np.ndarray | None = None,
) -> FusionResult:
    """Weighted average of the modalities' verdicts (WAVER).

    Each modality's window logits are averaged over its windows and normalised with a softmax
    (:func:`modality_probabilities`); the two probability vectors are summed with ``weights``
    rescaled to sum to 1 over the modalities a trial has, so a trial with one modality gets
    exactly that modality's probabilities. The answer is the argmax of the result.

    Parameters
    ----------
    av_logits : ndarray, shape (B, 6, classes) | None
        Audio-video window logits; None: no trial has them.
    eeg_logits : ndarray, shape (B, 4, classes) | None
    weights : (float, float)
        Weight of AV and of EEG, e.g. each model's validation accuracy; both > 0.
    av_present, eeg_present : ndarray of bool, shape (B,) | None
        Which trials have the modality (the logits of the others are ignored); None: all.

    Returns
    -------
    FusionResult
        probabilities (B, classes); used (B, 2) [av, eeg].
    """
    B, C = _batch(av_logits, eeg_logits)
    w = np.asarray(weights, np.float64)
    if w.shape != (2,) or not (w > 0).all():
        raise ValueError(f"weights must be two positive numbers (AV, EEG), got {weights}.")
    used = np.stack([_present(av_logits, av_present, B), _present(eeg_logits, eeg_present, B)], axis=1)  # (B, 2)
    share = w * used  # (B, 2)
    total = share.sum(axis=1, keepdims=True)
    share = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
    probs = np.zeros((B, C))
    for m, logits in enumerate((av_logits, eeg_logits)):
        if logits is not None:
            probs += share[:, m : m + 1] * modality_probabilities(logits)
    probs[total[:, 0] == 0] = 1.0 / C  # no modality: no evidence
    return FusionResult(probs, used)


def aver(
    av_logits: np.ndarray | None,
    eeg_logits: np.ndarray | None,
    *,
    av_present: np.ndarray | None = None,
    eeg_present: np.ndarray | None = None,
) -> FusionResult:
    """Plain average of the modalities' verdicts (AVER): :func:`waver` with equal weights."""
    return waver(av_logits, eeg_logits, (1.0, 1.0), av_present=av_present, eeg_present=eeg_present)


def trial_matrix(
    av_logits: np.ndarray | None,
    eeg_logits: np.ndarray | None,
    *,
    av_present: np.ndarray | None = None,
    eeg_present: np.ndarray | None = None,
    windows: tuple[int, int] = (6, 4),
) -> tuple[np.ndarray, np.ndarray]:
    """The CNN's input: each trial's window logits stacked, AV rows first, a missing modality's rows zero.

    Returns
    -------
    matrix : ndarray of float32, shape (B, 1, av windows + eeg windows, classes)
    used : ndarray of bool, shape (B, 2)
    """
    B, C = _batch(av_logits, eeg_logits)
    used = np.stack([_present(av_logits, av_present, B), _present(eeg_logits, eeg_present, B)], axis=1)
    rows = []
    for m, (logits, n) in enumerate(zip((av_logits, eeg_logits), windows)):
        if logits is None:
            rows.append(np.zeros((B, n, C), np.float32))
        elif np.shape(logits)[1] != n:
            raise ValueError(f"{MODALITIES[m]} logits have {np.shape(logits)[1]} windows per trial, the fusion takes {n}.")
        else:
            rows.append(np.asarray(logits, np.float32) * used[:, m, None, None])
    return np.concatenate(rows, axis=1)[:, None], used


# ----------------------------------------------------------------------------------------------
# The fusion CNN


@dataclass(frozen=True)
class FusionConfig:
    av_windows: int = 6  # 3.6 s audio-video windows per 21 s trial
    eeg_windows: int = 4  # 5.25 s EEG windows per trial
    n_classes: int = 5  # neutral, calm, happy, sad, angry (training.ravdess.EMOTIONS_5)
    dropout: float = 0.3  # after each pooling and the dense 64; it trains on a validation split only
    modality_dropout: float = 0.5  # trials that lose one modality's rows in training, each modality equally often

    def __post_init__(self) -> None:
        rows = self.av_windows + self.eeg_windows
        if rows < 9 or self.n_classes < 4:  # two (2, 1) poolings and the 2x2, 3x3 convolutions need this much
            raise ValueError(f"the CNN needs at least 9 window rows and 4 classes, got {rows} rows, {self.n_classes} classes.")
        for name in ("dropout", "modality_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")

    @property
    def rows(self) -> int:
        return self.av_windows + self.eeg_windows

    @property
    def flat(self) -> int:
        """Features after the second pooling (128 for 10 x 5)."""
        rows = ((self.rows - 1) // 2 - 2) // 2  # conv 2x2, pool, conv 3x3, pool
        return 64 * rows * (self.n_classes - 3)  # conv 2x2, conv 3x3; pooling keeps the columns

    def to_dict(self) -> dict:
        return asdict(self)


class FusionCNN(nn.Module):
    """The 10 x 5 matrix of one trial's window logits -> logits (B, n_classes).

    Input: float32 (B, 1, rows, n_classes) from :func:`trial_matrix`, a missing modality's rows
    zero. Each row is first centred (its mean over classes subtracted): a softmax does not see
    the shift, the two window models' logits get a common origin, and a zero row means exactly
    "no preference", which is what a missing window is. In training, ``modality_dropout`` of the
    trials lose one modality's rows (AV or EEG, equally often; never a trial's only one), so the
    network also answers from either alone.
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FusionConfig()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=2)  # valid padding
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.pool = nn.MaxPool2d(kernel_size=(2, 1))  # over windows only: classes keep their columns
        self.drop = nn.Dropout(config.dropout)
        self.fc1 = nn.Linear(config.flat, 64)
        self.fc2 = nn.Linear(64, config.n_classes)

    def _drop_modality(self, x: torch.Tensor) -> torch.Tensor:
        """Zero the AV or the EEG rows of a random ``modality_dropout`` of the trials present in both."""
        B, A = x.shape[0], self.config.av_windows
        has = x[:, 0].abs().sum(dim=2) > 0  # (B, rows)
        both = has[:, :A].any(1) & has[:, A:].any(1)
        drop = (torch.rand(B, device=x.device) < self.config.modality_dropout) & both
        drop_av = torch.rand(B, device=x.device) < 0.5
        keep = torch.ones(B, self.config.rows, device=x.device)
        keep[:, :A] = (~(drop & drop_av)).float()[:, None]
        keep[:, A:] = (~(drop & ~drop_av)).float()[:, None]
        return x * keep[:, None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if not torch.jit.is_tracing() and (x.dim() != 4 or tuple(x.shape[1:]) != (1, c.rows, c.n_classes)):
            raise ValueError(f"the fusion CNN takes (B, 1, {c.rows}, {c.n_classes}) window logits, got {tuple(x.shape)}; "
                             f"make them with models.fusion.trial_matrix.")  # fmt: skip
        if self.training and c.modality_dropout > 0:
            x = self._drop_modality(x)
        x = x - x.mean(dim=3, keepdim=True)  # (B, 1, rows, C), each row centred
        x = self.drop(self.pool(F.relu(self.conv1(x))))  # (B, 32, 4, 4)
        x = self.drop(self.pool(F.relu(self.conv2(x))))  # (B, 64, 1, 2)
        x = self.drop(F.relu(self.fc1(x.flatten(1))))  # (B, 64)
        return self.fc2(x)  # (B, n_classes)

    @torch.no_grad()
    def predict(self, matrix: np.ndarray, used: np.ndarray) -> FusionResult:
        """Probabilities of trials from :func:`trial_matrix`; trials with no modality get uniform ones."""
        self.eval()
        probs = torch.softmax(self(torch.from_numpy(matrix)), dim=1).numpy().astype(np.float64)
        probs[~used.any(axis=1)] = 1.0 / self.config.n_classes
        return FusionResult(probs, used)


# ----------------------------------------------------------------------------------------------
# XGBoost on the two modalities' probabilities


class XGBoostFusion:
    """Gradient-boosted trees on the concatenated per-modality class probabilities.

    Features of a trial (2 x classes): the AV verdict then the EEG verdict, each the softmax of the
    modality's mean window logits; a missing modality's features are NaN, XGBoost's missing value,
    which each split sends down the branch that training found best for it. Saved as XGBoost
    JSON, never pickled.
    """

    def __init__(self, n_classes: int = 5, *, n_estimators: int = 400, max_depth: int = 3, learning_rate: float = 0.1,
                 early_stopping_rounds: int = 30, seed: int = 0) -> None:  # fmt: skip
        from xgboost import XGBClassifier

        self.n_classes = n_classes
        self.model = XGBClassifier(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, objective="multi:softprob",
            eval_metric="mlogloss", early_stopping_rounds=early_stopping_rounds, tree_method="hist", n_jobs=1,
            random_state=seed, missing=np.nan,
        )  # fmt: skip

    @staticmethod
    def features(
        av_logits: np.ndarray | None,
        eeg_logits: np.ndarray | None,
        *,
        av_present: np.ndarray | None = None,
        eeg_present: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """float32 (B, 2 * classes) features, NaN where a modality is missing, and used (B, 2)."""
        B, C = _batch(av_logits, eeg_logits)
        used = np.stack([_present(av_logits, av_present, B), _present(eeg_logits, eeg_present, B)], axis=1)
        parts = [modality_probabilities(x) if x is not None else np.zeros((B, C)) for x in (av_logits, eeg_logits)]
        x = np.concatenate(parts, axis=1).astype(np.float32)
        x[np.repeat(~used, C, axis=1)] = np.nan
        return x, used

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> XGBoostFusion:
        """Train on features ``x`` (N, 2C) and labels ``y`` (N,); stop early on ``(x_val, y_val)``.

        Give it trials with a modality missing too (NaN features), or the trees never learn
        where missing values go.
        """
        missing = sorted(set(range(self.n_classes)) - set(np.unique(y).tolist()))
        if missing:
            raise ValueError(f"classes {missing} have no training trials; XGBoost needs every class among them.")
        self.model.fit(x, y, eval_set=[(x_val, y_val)], verbose=False)
        return self

    def predict(self, x: np.ndarray, used: np.ndarray) -> FusionResult:
        """Probabilities (B, classes) of features from :meth:`features`; no modality: uniform."""
        probs = self.model.predict_proba(x).astype(np.float64)
        probs[~used.any(axis=1)] = 1.0 / self.n_classes
        return FusionResult(probs, used)

    @property
    def rounds(self) -> int:
        """Boosting rounds kept (the best iteration of early stopping, plus one), each a tree per class."""
        return int(self.model.best_iteration) + 1

    def save(self, path: str | Path) -> Path:
        """Write the booster as XGBoost JSON (``path`` must end in .json)."""
        path = Path(path)
        if path.suffix != ".json":
            raise ValueError(f"{path}: XGBoost fusions are saved as JSON; name the file *.json.")
        self.model.save_model(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> XGBoostFusion:
        """A fusion saved by :meth:`save`; its class count is read from the file."""
        fusion = cls()
        fusion.model.load_model(Path(path))
        fusion.n_classes = int(fusion.model.n_classes_)
        return fusion


@dataclass
class Fusions:
    """The three trained fusions (and AVER, which needs no training)."""

    weights: tuple[float, float]  # WAVER: AV and EEG trial accuracy on the validation subjects
    xgboost: XGBoostFusion
    cnn: FusionCNN

    def judge(self, **logits: np.ndarray) -> dict[str, FusionResult]:
        """Each fusion's probabilities (N, C) and used modalities (N, 2) of N trials.

        ``logits``: ``av_logits`` (N, 6, C), ``eeg_logits`` (N, 4, C), ``av_present`` and
        ``eeg_present`` (N,) bool, as :func:`waver` takes them.
        """
        c = self.cnn.config
        return {
            "aver": aver(**logits),
            "waver": waver(weights=self.weights, **logits),
            "xgboost": self.xgboost.predict(*XGBoostFusion.features(**logits)),
            "cnn": self.cnn.predict(*trial_matrix(**logits, windows=(c.av_windows, c.eeg_windows))),
        }


def load_fusions(folder: str | Path) -> Fusions:
    """The fusions ``emofuse train fusion`` wrote to ``folder`` (training.fusion.train)."""
    folder = Path(folder)
    ckpt, _ = read_checkpoint(folder, "fusion_cnn", "fusion")
    cnn = FusionCNN(FusionConfig(**ckpt["config"]))
    cnn.load_state_dict(ckpt["state_dict"])
    waver_card = ModelCard.load(folder / "fusion_waver.card.json")
    weights = waver_card.preprocessing["waver"]
    return Fusions((weights["av"], weights["eeg"]), XGBoostFusion.load(folder / "fusion_xgboost.json"), cnn.eval())

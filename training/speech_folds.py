"""Actor-wise cross-validation of the speech CNN on RAVDESS speech: how it fares on people it never heard.

    python -m training.speech_folds --data /work/shared/data/ravdess-speech --out runs/speech-folds [--folds 5 --jobs 2]
    emofuse train audio --folds 5 --jobs 2 --ensemble --data DIR --out DIR   (the same; the shipped speech model)

:mod:`training.speech` trains on one fixed split and tests on four actors, so its figure is
theirs; here every actor is tested once, by a CNN that never heard them:

- the actors, sorted, are dealt round-robin into ``folds`` folds, the men first and then the
  women, so that every fold has actors of both sexes (where there are as many of each as folds)
  and the folds differ in size by one at most (19 actors, 5 folds: four of 4 actors and one of 3);
- fold k tests on its actors and trains on all the others, for all ``epochs``, keeping the last
  (the shipped model); or, with ``val_actors`` N, on all the others but N of them (both sexes,
  taken from the next folds), whose clips choose the epoch kept (early stopping). The 3
  validation actors of the first shipped folds chose epochs 26-37 of 40, the end of the cosine
  schedule; training on them instead gained 3.9 points on unheard actors (README);
- each fold trains the very CNN :func:`training.speech.train` trains, with the same
  :func:`training.speech.fit`, windows, augmentation and :class:`~training.speech.TrainConfig`
  (one CNN per seed of ``seeds``, softmaxes averaged).

Each fold's test clips are also measured under every recording condition of
:data:`training.conditions.CONDITIONS` (a quiet level, noise, a room, a telephone band, all at once).

To compare recipes in less time, ``--only 1,2`` runs some folds (the file says which, and
``complete`` stays false); ``--speed``, ``--pitch``, ``--mixup`` and ``--conditions`` set each
augmentation apart. ``--model mlp`` cross-validates the MFCC-statistics MLP baseline instead of
the CNN, on the same folds and windows, trained without augmentation as :mod:`training.speech`
trains it, and measured under the same recording conditions (22 minutes on 2 cores).

``OUT/speech_folds.json`` holds each fold's accuracy, macro-F1, per-actor, per-sex and per-condition accuracy;
their mean and standard deviation over folds; accuracy, macro-F1 and confusion matrix pooled over
every clip; per-actor (every actor) and per-sex accuracy; chance; the configuration and the time
taken. It is rewritten after every fold (``complete`` false until the last), so a stopped run
keeps what it measured. One line of JSON is printed at the end.

With ``--ensemble`` the fold models are saved together as one :class:`models.speech.SpeechEnsemble`
(``OUT/speech.pt``, ``OUT/speech.card.json`` and the pooled test report, as :func:`training.speech.train`
writes them), which
``emofuse repo build --speech OUT`` serves. Its card's figures are those of each member on its own
held-out actors: every actor trained some member, so no actor is left that the ensemble never heard.

Time: a fold trains one CNN for 40 epochs, 23-24 minutes on one thread of a quiet machine (15-16
actors); with ``--jobs 2`` on 2 cores the five folds of the shipped model took 87 minutes, other
work beside them for the first hour (the fifth fold alone). After the first fold the log gives
an estimate of the whole run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch

from models.parameters import count_parameters
from models.speech import SpeechEnsemble, speech_card
from preprocessing.audio_features import SAMPLE_RATE
from training.conditions import CONDITIONS, KINDS, STUDIO
from training.loop import best_epoch
from training.metrics import report
from training.ravdess import EMOTIONS_8, LICENCE, Clip, actor_groups, load_audio, read_clips
from training.report import write_report
from training.speech import TrainConfig, _select, evaluate, even_windows, features, fit, predict_clips
from training.trials import SubjectSplit

__all__ = ["FoldsConfig", "actor_folds", "cross_validate", "main", "save_ensemble", "summarise"]

log = logging.getLogger("training.speech_folds")

RESULTS = "speech_folds.json"


@dataclass(frozen=True)
class FoldsConfig:
    """How the actors are split into folds; the training of each fold is ``train``'s."""

    folds: int = 5
    val_actors: int = 0  # training actors of each fold whose clips choose its epoch (both sexes); 0: none, the last epoch is kept
    model: str = "cnn"  # what each fold trains: the log-mel CNN, or "mlp", the MFCC-statistics baseline
    only: tuple[int, ...] | None = None  # run only these folds (1-based), to compare recipes in less time
    ensemble: bool = False  # also save the fold models as one SpeechEnsemble (OUT/speech.pt, card)
    jobs: int = 1  # folds trained at once, each in a process of its own (one torch thread each)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(seeds=(0,), baseline=False))  # one CNN per fold, no MLP

    def to_dict(self) -> dict:
        return {"folds": self.folds, "val_actors": self.val_actors, "model": self.model, "only": self.only,
                "ensemble": self.ensemble, "jobs": self.jobs, "train": self.train.to_dict()}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Folds


def _deal(actors: Sequence[int], n_folds: int) -> list[tuple[int, ...]]:
    """The test actors of each fold: men then women, sorted, dealt round-robin."""
    ordered = sorted(a for a in actors if a % 2) + sorted(a for a in actors if a % 2 == 0)
    return [tuple(sorted(ordered[k::n_folds])) for k in range(n_folds)]


def _validation(tests: list[tuple[int, ...]], k: int, n_val: int) -> tuple[int, ...]:
    """``n_val`` actors of the folds after fold ``k``, sexes alternating (men first in even folds)."""
    order = [a for j in range(1, len(tests)) for a in tests[(k + j) % len(tests)]]
    men, women = [a for a in order if a % 2], [a for a in order if a % 2 == 0]
    first, second = (men, women) if k % 2 == 0 else (women, men)
    return tuple(sorted([a for pair in zip_longest(first, second) for a in pair if a is not None][:n_val]))


def actor_folds(actors: Sequence[int], n_folds: int = 5, n_val: int = 3) -> list[SubjectSplit]:
    """The train, validation and test actors of each fold; every actor is tested in exactly one.

    Deterministic: the same actors give the same folds. 19 actors, 5 folds, 3 validation actors:
    test 4 actors (3 in the last fold), validation 3, train 12 (13); no validation actor: train 15 (16).

    Raises
    ------
    ValueError
        If there are fewer than 2 folds, a negative count of validation actors, or too few actors for
        every fold to train on one.
    """
    actors = sorted(set(actors))
    if n_folds < 2 or n_val < 0:
        raise ValueError(f"cross-validation needs 2 folds or more and 0 validation actors or more (got {n_folds} folds, {n_val}).")
    if n_folds > len(actors) or len(actors) - math.ceil(len(actors) / n_folds) - n_val < 1:
        raise ValueError(f"{len(actors)} actors are too few for {n_folds} folds with {n_val} validation actors each.")
    tests = _deal(actors, n_folds)
    splits = []
    for k, test in enumerate(tests):
        val = _validation(tests, k, n_val)
        splits.append(SubjectSplit(train=tuple(a for a in actors if a not in test and a not in val), val=val, test=test))
    return splits


# ---------------------------------------------------------------------------------------------
# One fold


def _under_conditions(kind: str, model: torch.nn.Module, audio: Sequence[np.ndarray], truth: np.ndarray, cfg: TrainConfig,
                      seed: int, chunk: int = 64) -> dict[str, float]:  # fmt: skip
    """Accuracy on clips (``audio``, labels ``truth``) under each of :data:`training.conditions.CONDITIONS`,
    ``cfg.eval_crops`` windows averaged; ``chunk`` clips at a time, to keep memory small."""
    out = {}
    for condition in CONDITIONS:
        predicted = np.concatenate([predict_clips(model, features(kind, condition.apply(even_windows(audio[i : i + chunk], cfg.eval_crops),
                                                                                         SAMPLE_RATE, seed + i), cfg), cfg.eval_crops)
                                    for i in range(0, len(audio), chunk)])  # fmt: skip
        out[condition.name] = round(float(np.mean(predicted == truth)), 4)
    return out


def _fold(k: int, split: SubjectSplit, clips: list[Clip], audio: list[np.ndarray], cfg: TrainConfig, kind: str = "cnn"
          ) -> tuple[dict, list[torch.nn.Module], np.ndarray]:  # fmt: skip
    """Train fold ``k``'s models of ``kind`` ('cnn', or 'mlp': the MFCC-statistics baseline; one per seed)
    and test them on its actors.

    Returns
    -------
    figures : dict
        The fold's actors, clips, test ``report`` (:func:`training.speech.evaluate`), per-actor and
        per-sex accuracy, members (seed, best epoch...) and seconds.
    members : list of nn.Module
        One model per seed, each at its best epoch.
    predicted : ndarray of int64, shape (n_test,)
        Class of each test clip, in the order of ``split.indices``.
    """
    t0 = time.perf_counter()
    idx = split.indices(np.array([c.actor for c in clips]))
    y = {name: np.array([clips[i].label for i in ix], np.int64) for name, ix in idx.items()}
    x = {name: features(kind, even_windows([audio[i] for i in idx[name]], cfg.eval_crops), cfg) if len(idx[name]) else None
         for name in ("val", "test")}  # fmt: skip
    members, runs = [], []
    for seed in cfg.seeds:
        model, history = fit(kind, [audio[i] for i in idx["train"]], y["train"], x["val"], y["val"] if len(y["val"]) else None, cfg, seed)
        best = best_epoch(history)
        members.append(model)
        runs.append({"seed": seed, "best_epoch": best.epoch, "epochs_run": len(history),
                     "validation_accuracy": None if math.isnan(best.val_acc) else round(best.val_acc, 4),
                     "seconds": round(history[-1].seconds, 1)})  # fmt: skip
    model = members[0] if len(members) == 1 else SpeechEnsemble(members)
    test = evaluate(model, x["test"], y["test"], cfg.eval_crops)
    predicted = predict_clips(model, x["test"], cfg.eval_crops)
    conditions = _under_conditions(kind, model, [audio[i] for i in idx["test"]], y["test"], cfg, seed=1000 * k)
    figures = {
        "fold": k, "actors": split.to_dict(), "clips": {name: len(ix) for name, ix in idx.items()},
        "accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "single_window_accuracy": test["single_window"]["accuracy"],
        **actor_groups(y["test"], predicted, [clips[i].actor for i in idx["test"]]),
        "conditions": conditions, "report": test, "members": runs, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    return figures, members, predicted


# Folds in worker processes read the clips from here: a forked child shares its parent's memory,
# where passing them with each fold would copy some 350 MB of audio per fold.
_SHARED: tuple[list[Clip], list[np.ndarray], FoldsConfig] | None = None


def _fold_in_worker(k: int, split: SubjectSplit) -> tuple[int, tuple[dict, list[torch.nn.Module], np.ndarray]]:
    clips, audio, cfg = _SHARED
    torch.set_num_threads(cfg.train.threads)
    return k, _fold(k, split, clips, audio, cfg.train, cfg.model)


def _folds_run(splits: dict[int, SubjectSplit], clips: list[Clip], audio: list[np.ndarray], cfg: FoldsConfig):
    """Each fold's ``(k, (figures, members, predicted))`` of ``splits`` (fold number: split), in the
    order they finish: one after another, or ``cfg.jobs`` at a time in forked processes (same seeds,
    so the same figures)."""
    if cfg.jobs <= 1:
        for k, split in splits.items():
            log.info("fold %d/%d: test %s, validation %s, train %s", k, cfg.folds, split.test, split.val, split.train)
            yield k, _fold(k, split, clips, audio, cfg.train, cfg.model)
        return
    global _SHARED
    _SHARED = (clips, audio, cfg)
    try:
        with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            for k, split in splits.items():
                log.info("fold %d/%d queued: test %s, validation %s, train %s", k, cfg.folds, split.test, split.val, split.train)
            futures = [pool.submit(_fold_in_worker, k, split) for k, split in splits.items()]
            for future in as_completed(futures):
                yield future.result()
    finally:
        _SHARED = None


# ---------------------------------------------------------------------------------------------
# The summary


def _spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1; 0 for one value), least and most of per-fold figures."""
    v = np.asarray(values, np.float64)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": round(float(v.mean()), 4), "std": round(std, 4), "min": round(float(v.min()), 4), "max": round(float(v.max()), 4)}


def summarise(folds: list[dict], truth: np.ndarray, predicted: np.ndarray, actors: np.ndarray) -> dict:
    """Figures over folds: mean and spread of accuracy and macro-F1, and pooled over every test clip.

    Parameters
    ----------
    folds : the figures of each fold done (:func:`_fold`)
    truth, predicted, actors : ndarray, shape (n,)
        Label, predicted class and actor of every clip tested so far, all folds together.
    """
    pooled = report(truth, predicted, EMOTIONS_8)
    windows = sum(f["report"]["single_window"]["accuracy"] * f["clips"]["test"] for f in folds) / max(1, len(truth))
    conditions = {c.name: round(sum(f["conditions"][c.name] * f["clips"]["test"] for f in folds) / max(1, len(truth)), 4)
                  for c in CONDITIONS}  # fmt: skip
    return {
        "accuracy": _spread([f["accuracy"] for f in folds]),
        "macro_f1": _spread([f["macro_f1"] for f in folds]),
        "spread_what": "over folds, each fold's CNN on its own test actors; std with n - 1",
        "pooled": {**pooled, "single_window_accuracy": round(windows, 4),
                   "what": "every tested clip of every fold together, each classified by the fold that never heard its actor"},
        **actor_groups(truth, predicted, actors.tolist()),
        "conditions": conditions,
        "conditions_what": "pooled accuracy of the test clips degraded by each condition (training.conditions.CONDITIONS), "
                           "each fold's CNN on its own test actors",
        "chance_accuracy": round(1 / len(EMOTIONS_8), 4),
    }  # fmt: skip


def _write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).write_text(json.dumps(result, indent=2) + "\n")


def _estimate(first: dict, n_folds: int, cfg: FoldsConfig) -> None:
    """Log how long the ``n_folds`` folds take at the first fold's pace, and at most (no early stopping)."""
    secs = first["seconds"] * math.ceil(n_folds / max(1, cfg.jobs)) / n_folds  # per fold, run ``jobs`` at a time
    epochs = max(1, np.mean([m["epochs_run"] for m in first["members"]]))
    most = cfg.train.epochs if cfg.model == "cnn" else cfg.train.baseline_epochs
    log.info("the first fold took %.0f s: all %d folds take about %.0f min at that pace, at most %.0f min if no fold stops early",
             first["seconds"], n_folds, secs * n_folds / 60, secs * n_folds * most / epochs / 60)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run


def _data(clips: list[Clip]) -> str:
    return (f"RAVDESS speech (Livingstone & Russo 2018, doi:10.1371/journal.pone.0196391; Zenodo 1188976): "
            f"{len(clips)} clips of actors {sorted({c.actor for c in clips})}, resampled to 22,050 Hz")  # fmt: skip


def _chosen(splits: list[SubjectSplit], only: Sequence[int] | None) -> dict[int, SubjectSplit]:
    """The folds to run, by number (1-based): all, or those of ``only``.

    Raises
    ------
    ValueError
        If ``only`` names a fold that does not exist.
    """
    numbered = dict(enumerate(splits, start=1))
    if only is None:
        return numbered
    if missing := sorted(set(only) - set(numbered)):
        raise ValueError(f"there is no fold {', '.join(map(str, missing))}: the {len(splits)} folds are numbered 1 to {len(splits)}.")
    return {k: numbered[k] for k in sorted(set(only))}


def _check(cfg: FoldsConfig) -> None:
    """Refuse what cannot be run before any audio is read."""
    if cfg.model not in ("cnn", "mlp"):
        raise ValueError(f"unknown model {cfg.model!r}: cross-validate the 'cnn' (served) or the 'mlp' baseline.")
    if cfg.ensemble and (cfg.only is not None or cfg.model != "cnn"):
        raise ValueError("--ensemble saves the served model: it needs every fold (no --only) and the CNN (no --model mlp).")


def cross_validate(data: str | Path, out: str | Path, cfg: FoldsConfig | None = None) -> dict:
    """Cross-validate the speech CNN over the actors of RAVDESS speech at ``data``; write ``out/speech_folds.json``.

    Returns
    -------
    dict
        What the file holds: ``folds`` (each fold's figures), ``accuracy`` and ``macro_f1``
        (mean, std, min, max over folds), ``pooled``, ``per_actor``, ``per_sex``,
        ``chance_accuracy``, ``config``, ``seconds``.
    """
    t_start = time.perf_counter()
    cfg = cfg or FoldsConfig()
    _check(cfg)
    torch.set_num_threads(cfg.train.threads)
    out = Path(out)
    clips = _select(read_clips(data), cfg.train.max_clips)
    splits = _chosen(actor_folds([c.actor for c in clips], cfg.folds, cfg.val_actors), cfg.only)
    audio = load_audio(clips)
    actors = np.array([c.actor for c in clips])
    labels = np.array([c.label for c in clips], np.int64)
    model = "speech CNN" if cfg.model == "cnn" else "MFCC-statistics MLP baseline"
    which = "" if cfg.only is None else f", only fold{'s' if len(splits) > 1 else ''} {', '.join(map(str, splits))}"
    base = {"what": f"actor-wise {cfg.folds}-fold cross-validation of the {model} (training.speech_folds){which}", "data": _data(clips),
            "config": cfg.to_dict(), "threads": cfg.train.threads, "torch": torch.__version__}  # fmt: skip
    done: dict[int, tuple[dict, list[torch.nn.Module], np.ndarray]] = {}
    for k, fold in _folds_run(splits, clips, audio, cfg):
        figures = fold[0]
        done[k] = fold
        log.info("fold %d/%d: accuracy %.3f, macro-F1 %.3f on actors %s (%s) in %.0f s (%d of %d folds done)", k, cfg.folds,
                 figures["accuracy"], figures["macro_f1"], figures["actors"]["test"],
                 ", ".join(f"{s} {a:.3f}" for s, a in figures["per_sex"].items()), figures["seconds"], len(done), cfg.folds)  # fmt: skip
        if len(done) == 1:
            _estimate(figures, len(splits), cfg)
        ks = sorted(done)
        tested = np.concatenate([splits[j].indices(actors)["test"] for j in ks])
        result = {**base, "complete": len(done) == cfg.folds, "folds": [done[j][0] for j in ks],
                  **summarise([done[j][0] for j in ks], labels[tested], np.concatenate([done[j][2] for j in ks]), actors[tested]),
                  "seconds": round(time.perf_counter() - t_start, 1)}  # fmt: skip
        _write(out, result)
    members = [m for k in sorted(done) for m in done[k][1]]
    if cfg.ensemble:
        save_ensemble(out, members, result, clips, cfg)
    log.info("wrote %s in %.0f s", out / RESULTS, time.perf_counter() - t_start)
    return result


def save_ensemble(out: Path, members: list[torch.nn.Module], result: dict, clips: list[Clip], cfg: FoldsConfig) -> None:
    """Save every fold's CNNs as one :class:`~models.speech.SpeechEnsemble`: ``out/speech.pt`` and
    ``out/speech.card.json``, in :func:`training.speech.train`'s format; the card's figures are the
    members' on their own held-out actors."""
    tc = cfg.train
    model = members[0] if len(members) == 1 else SpeechEnsemble(members)
    torch.save({"kind": "cnn", "config": model.config.to_dict(), "members": [m.state_dict() for m in members],
                "labels": list(EMOTIONS_8), "log_mel": tc.logmel.to_dict()}, out / "speech.pt")  # fmt: skip
    pooled = result["pooled"]
    held_out = ("each fold's CNN on the actors it never heard, all folds pooled: no actor is left that the ensemble "
                "itself never heard, so these are the figures of its members, not of the ensemble")  # fmt: skip
    card = speech_card(
        model, tc.logmel,
        source=(f"trained from scratch by training.speech_folds: the {len(members)} CNNs of an actor-wise {cfg.folds}-fold "
                f"cross-validation (seeds {', '.join(map(str, tc.seeds))} per fold), softmaxes averaged, "
                f"{count_parameters(model):,} parameters in all"),
        data=f"{_data(clips)}; test actors of each fold: {[f['actors']['test'] for f in result['folds']]}",
        licence=LICENCE,
        metrics={
            "validation_accuracy": pooled["accuracy"],
            "validation_accuracy_what": f"accuracy of {held_out}",
            "test": {**{k: pooled[k] for k in ("n", "accuracy", "macro_f1", "recall", "labels", "confusion_matrix")},
                     "what": f"{held_out}; {tc.eval_crops} windows averaged per clip",
                     "single_window": {"accuracy": pooled["single_window_accuracy"],
                                       "what": f"each of those {tc.eval_crops} windows alone, as serving sees them"}},
            "groups": {"per_actor": result["per_actor"], "per_sex": result["per_sex"]},
            "groups_what": f"{held_out}; every actor tested once",
            "conditions": result["conditions"],
            "conditions_what": f"accuracy of {held_out}, the test clips degraded by each recording condition (training.conditions)",
            "chance_accuracy": result["chance_accuracy"],
            "cross_validation": {k: result[k] for k in ("accuracy", "macro_f1", "spread_what")},
            "training": {"folds": [{k: f[k] for k in ("fold", "actors", "accuracy", "macro_f1", "members")}
                                   for f in result["folds"]],
                         "parameters": count_parameters(model), "total_time_s": result["seconds"],
                         "threads": tc.threads, "torch": torch.__version__, "config": cfg.to_dict()},
        },
    )  # fmt: skip
    card.limits.append("Every RAVDESS actor here trained some of its members: its figures are those of each member on "
                       "the actors it never heard, and the ensemble itself has not been measured on an unheard voice.")  # fmt: skip
    card.save(out / "speech.card.json")
    write_report(card.metrics["test"], out, "speech")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _kinds(text: str) -> tuple[str, ...]:
    """``--conditions``: kinds of :data:`training.conditions.KINDS`, comma-separated, or 'none'."""
    kinds = () if text.strip() == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    try:
        STUDIO.keeping(kinds)  # its check of the names
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} Or none.") from None
    return kinds


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m training.speech_folds --data DIR --out DIR [--folds 5 --seeds 0 --epochs N ...]``.

    Prints a one-line JSON summary: accuracy and macro-F1 over folds (mean, std), pooled accuracy, per sex, seconds.
    """
    d = FoldsConfig()
    da = d.train.augment
    p = argparse.ArgumentParser(prog="python -m training.speech_folds", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the ravdess-speech folder (labels.csv, Actor_XX/)")
    p.add_argument("--out", required=True, help=f"folder for {RESULTS} (and speech.pt, speech.card.json with --ensemble)")
    p.add_argument("--folds", type=int, default=d.folds, help="folds of actors; each actor is tested in one")
    p.add_argument("--val-actors", type=int, default=d.val_actors, help="training actors of each fold that choose its epoch; 0: train on all the others, keep the last epoch")
    p.add_argument("--seeds", type=_ints, default=d.train.seeds, help="one CNN per seed and fold, comma-separated")
    p.add_argument("--epochs", type=int, default=d.train.epochs, help="most epochs per CNN (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=d.train.patience)
    p.add_argument("--max-clips", type=int, default=None, help="use only this many clips, evenly spread (smoke tests)")
    p.add_argument("--threads", type=int, default=d.train.threads)
    p.add_argument("--jobs", type=int, default=d.jobs, help="folds trained at once, one process and thread each")
    p.add_argument("--only", type=_ints, help="run only these folds (1-based, comma-separated): to compare recipes in less time")
    p.add_argument("--model", choices=("cnn", "mlp"), default=d.model, help="the served log-mel CNN, or the MFCC-statistics MLP baseline")
    p.add_argument("--speed", type=float, default=da.speed, help="speed perturbation range (tempo and pitch); 0 disables")
    p.add_argument("--pitch", type=float, default=da.pitch, help="mel-axis warp range (pitch and formants, not tempo); 0 disables")
    p.add_argument("--mixup", type=float, default=da.mixup_alpha, help="mixup alpha; 0 disables")
    p.add_argument("--conditions", type=_kinds, default=KINDS, metavar="KIND,...",
                   help=f"recording conditions to train under, of {','.join(KINDS)}; 'none' for the studio alone")
    p.add_argument("--studio-only", action="store_true", help="train without the real recording conditions: --conditions none")
    p.add_argument("--ensemble", action="store_true", help="also save the fold models as one servable ensemble")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    recordings = STUDIO if a.studio_only else da.recordings.keeping(a.conditions)
    augment = replace(da, speed=a.speed, pitch=a.pitch, mixup_alpha=a.mixup, recordings=recordings)
    train = replace(d.train, seeds=a.seeds, epochs=a.epochs, patience=a.patience, max_clips=a.max_clips, threads=a.threads,
                    augment=augment)  # fmt: skip
    folds = FoldsConfig(folds=a.folds, val_actors=a.val_actors, model=a.model, only=a.only, ensemble=a.ensemble, jobs=a.jobs,
                        train=train)  # fmt: skip
    try:
        r = cross_validate(a.data, a.out, folds)
    except ValueError as e:
        p.error(str(e))
    print(json.dumps({"folds": a.folds, "only": a.only, "model": a.model, "accuracy_mean": r["accuracy"]["mean"], "accuracy_std": r["accuracy"]["std"],
                      "macro_f1_mean": r["macro_f1"]["mean"], "macro_f1_std": r["macro_f1"]["std"],
                      "pooled_accuracy": r["pooled"]["accuracy"], "per_sex": r["per_sex"], "conditions": r["conditions"],
                      "chance_accuracy": r["chance_accuracy"], "seconds": r["seconds"]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

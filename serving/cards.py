"""The cards of the served models, read from a Triton model repository: what each model is,
what it was trained and measured on, what it is for and what it is not, and its known limits.

Read from every ensemble emofuse calls (:data:`SERVED_ENSEMBLES`), each step of it, their
``card.json`` and the ``weights`` parameter of their ``config.pbtxt``. Nothing here imports a
model: it reads JSON and text, so it says what is served, not what some code believes is. The
gateway's ``/about`` page and ``emofuse models`` show it::

    catalogue = read_catalogue(Path("model_repository"))
    for model in catalogue.models:
        print(model.name, model.trained, model.figures, model.limits)

A model whose config says other weights than ``real`` learnt synthetic data only: it is marked
untrained, and serving never shows its answers as emotions.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysis import MODES
from .trials import TRIAL_MODEL

__all__ = ["SERVED_ENSEMBLES", "Catalogue", "ServedModel", "describe", "read_catalogue"]

log = logging.getLogger(__name__)

#: The ensembles emofuse calls: one per mode, and the trial's.
SERVED_ENSEMBLES = (*(mode.model for mode in MODES.values()), TRIAL_MODEL)
#: Which mode each ensemble answers.
_MODE_OF = {**{mode.model: name for name, mode in MODES.items()}, TRIAL_MODEL: "trial"}
_PARAMETER = re.compile(r'parameters\s*\{\s*key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"\s*\}\s*\}')
_STEP = re.compile(r'model_name:\s*"([^"]+)"')


@dataclass
class ServedModel:
    """One served model as its card describes it; several repository entries may share a card (a model and its glue)."""

    name: str
    task: str
    data: str
    source: str
    licence: str
    trained: bool
    labels: list[str]
    figures: list[tuple[str, str]]  # (what was measured, the figure and on what)
    limits: list[str]
    intended_use: str = ""
    not_for: str = ""
    groups: list[tuple[str, str]] = field(default_factory=list)  # (group, its figures) per actor, per sex, per class
    modes: list[str] = field(default_factory=list)  # the modes it answers in: face, audio, av, attention, trial


@dataclass
class Catalogue:
    """The served models, in the order of the modes, and what could not be read."""

    repository: Path
    models: list[ServedModel] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def untrained(self) -> list[ServedModel]:
        return [model for model in self.models if not model.trained]


def _config(path: Path) -> tuple[list[str], dict[str, str]]:
    """An entry's ensemble steps (none for a plain model) and parameters, read from its ``config.pbtxt``."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())  # no quoted value holds a '#'
    return _STEP.findall(text), dict(_PARAMETER.findall(text))


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _without_settings(text: str) -> str:
    """A card's data description without its generator settings (``{...}`` blocks): what a reader needs."""
    out, depth = [], 0
    for char in text:
        depth += char == "{"
        if depth == 0:
            out.append(char)
        depth -= char == "}" and depth > 0
    return re.sub(r"\s+([,;])", r"\1", re.sub(r"\s{2,}", " ", "".join(out))).strip()


def _result(what: str, result: dict[str, Any]) -> tuple[str, str]:
    detail = [f"macro-F1 {result['macro_f1']:.3f}"] if isinstance(result.get("macro_f1"), float) else []
    if isinstance(result.get("n"), int):
        detail.append(f"{result['n']} examples" + (f": {result['what']}" if isinstance(result.get("what"), str) else ""))
    return what, _percent(result["accuracy"]) + (f" ({', '.join(detail)})" if detail else "")


def _figures(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The measured figures of a card, in words: held-out accuracy first, chance last."""
    figures: list[tuple[str, str]] = []
    test = metrics.get("test")
    if isinstance(test, dict) and isinstance(test.get("accuracy"), float):
        figures.append(_result("Accuracy on held-out data", test))
        window = test.get("single_window")
        if isinstance(window, dict) and isinstance(window.get("accuracy"), float):
            figures.append(_result("One window alone", window))
    elif isinstance(test, dict):
        figures += [_result(f"Held-out accuracy, {name.replace('_', ' ')}", part)
                    for name, part in test.items() if isinstance(part, dict) and isinstance(part.get("accuracy"), float)]  # fmt: skip
    trials = metrics.get("test_trials")
    if isinstance(trials, dict) and isinstance(trials.get("accuracy"), float):
        figures.append(_result("Held-out accuracy per trial", trials))
    if isinstance(metrics.get("validation_accuracy"), float):
        source, what = metrics.get("validation_accuracy_source"), metrics.get("validation_accuracy_what")
        figures.append(("Reported accuracy" if source else "Validation accuracy",
                        _percent(metrics["validation_accuracy"]) + (f": {source or what}" if source or what else "")))  # fmt: skip
    if isinstance(metrics.get("accuracy"), str):
        figures.append(("Accuracy", metrics["accuracy"]))
    members = [m for m in metrics.get("members") or [] if isinstance(m, dict) and isinstance(m.get("PrivateTest"), float)]
    if members:  # a face ensemble: what each member gets alone, beside the whole's figure above
        figures.append(("Each member alone, PrivateTest", ", ".join(f"{Path(str(m.get('member'))).name} {_percent(m['PrivateTest'])}" for m in members)))
    if isinstance(metrics.get("weights"), dict):
        figures.append(("Weight of each model", ", ".join(f"{name} {weight:.2f}" for name, weight in metrics["weights"].items())))
    decision = metrics.get("decision")
    if isinstance(decision, dict) and isinstance(decision.get("rule"), str):
        figures.append(("Decision", decision["rule"]))
    if isinstance(metrics.get("chance_accuracy"), float):
        figures.append(("Chance (guessing)", _percent(metrics["chance_accuracy"])))
    return figures


def _limits(card: dict[str, Any], trained: bool) -> list[str]:
    """What a reader must know before believing the model: what its card says and does not say."""
    metrics, labels = card.get("metrics") or {}, card.get("labels") or []
    if not trained:
        return ["Untrained: it learnt synthetic data only and was never measured on a real person. emofuse runs it so "
                "the whole pipeline can be tried, and never shows its answers as emotions; its figures above are on "
                "synthetic data and say nothing about people."]  # fmt: skip
    limits = []
    test = metrics.get("test")
    if isinstance(test, dict) and isinstance(test.get("accuracy"), float):
        guess = metrics.get("chance_accuracy")
        limits.append(f"About {round(10 * (1 - test['accuracy']))} in 10 of its answers on held-out data were wrong"
                      + (f" (guessing: {round(10 * (1 - guess))} in 10)." if isinstance(guess, float) else "."))  # fmt: skip
    if "not measured" in str(metrics.get("validation_accuracy_source", "")):
        limits.append("Its accuracy is its authors' figure: emofuse has not measured it.")
    if isinstance(metrics.get("accuracy"), str) and metrics["accuracy"].startswith("not measured"):
        limits.append("Its accuracy on recordings of people is not known.")
    if len(labels) > 1:
        limits.append(f"It can only answer one of its {len(labels)} labels ({', '.join(labels)}): whatever else a "
                      "person expresses is read as one of them.")  # fmt: skip
    if "non-commercial" in str(card.get("licence", "")).lower():
        limits.append("Non-commercial use only: its weights were made from data licensed so.")
    if "research" in str(card.get("licence", "")).lower():
        limits.append("Research use only: its weights were made from data released for research.")
    return limits + [text for text in card.get("limits") or [] if isinstance(text, str)]


def _groups(metrics: dict[str, Any], labels: list[str]) -> list[tuple[str, str]]:
    """Figures per group: those of ``metrics["groups"]`` (per actor, per sex...), then the held-out recall of each class."""
    rows = []
    for name, figures in (metrics.get("groups") or {}).items():
        if isinstance(figures, dict):
            rows.append((name.replace("_", " "), ", ".join(f"{group} {_percent(v)}" for group, v in figures.items() if isinstance(v, float))))
    test = metrics.get("test")
    recall = test.get("recall") if isinstance(test, dict) else None
    if isinstance(recall, dict) and recall:
        rows.append(("recall per class (held out)", ", ".join(f"{label} {_percent(r)}" for label, r in recall.items())))
    return rows


def _card(directory: Path, parameters: dict[str, str]) -> ServedModel:
    card = json.loads((directory / "card.json").read_text())
    trained = parameters.get("weights", card.get("weights")) == "real"  # the config decides, as serving.ModelInfo does
    return ServedModel(
        name=card.get("name", directory.name), task=card.get("task", ""), data=_without_settings(card.get("data", "")),
        source=_without_settings(card.get("source", "")), licence=card.get("licence", ""), trained=trained,
        labels=list(card.get("labels") or []), figures=_figures(card.get("metrics") or {}), limits=_limits(card, trained),
        intended_use=card.get("intended_use", ""), not_for=card.get("not_for", ""),
        groups=_groups(card.get("metrics") or {}, list(card.get("labels") or [])) if trained else [],
    )  # fmt: skip


def _ensemble(repository: Path, ensemble: str) -> list[ServedModel]:
    """The cards of an ensemble and of its steps, one per card name (a model and its glue share one)."""
    steps, parameters = _config(repository / ensemble / "config.pbtxt")
    cards: dict[str, ServedModel] = {}
    # Steps first: the parts of a fusion are listed before the fusion itself.
    for name, settings in [*((step, _config(repository / step / "config.pbtxt")[1]) for step in steps), (ensemble, parameters)]:
        card = _card(repository / name, settings)
        known = cards.setdefault(card.name, card)
        known.trained = known.trained and card.trained  # untrained if any part of it is
    return list(cards.values())


def read_catalogue(repository: Path, ensembles: tuple[str, ...] = SERVED_ENSEMBLES) -> Catalogue:
    """Every model the ``ensembles`` run, with the modes each answers in; what cannot be read is in ``problems``."""
    catalogue, known = Catalogue(Path(repository)), {}
    for ensemble in ensembles:
        try:
            cards = _ensemble(catalogue.repository, ensemble)
        except (OSError, ValueError) as err:  # ValueError: json's errors
            log.warning("the cards of %s in %s cannot be read: %s", ensemble, repository, err)
            catalogue.problems.append(f"The model cards of {ensemble} cannot be read from the model repository.")
            continue
        for card in cards:
            model = known.setdefault(card.name, card)
            model.trained = model.trained and card.trained
            model.modes.append(_MODE_OF.get(ensemble, ensemble))
    catalogue.models = list(known.values())
    return catalogue


def describe(model: ServedModel) -> str:
    """One model's card as text for a terminal (``emofuse models NAME``)."""
    lines = [f"{model.name}: {'trained on real data' if model.trained else 'UNTRAINED (never shown as an emotion)'}", f"  {model.task}"]
    facts = [("answers in", ", ".join(model.modes)), ("labels", ", ".join(model.labels)), ("data", model.data),
             ("made by", model.source), ("licence", model.licence), ("intended use", model.intended_use), ("not for", model.not_for)]  # fmt: skip
    lines += [f"  {what}: {text}" for what, text in facts if text]
    for title, rows in (("measured", model.figures), ("per group", model.groups)):
        if rows:
            lines += [f"  {title}:", *(f"    {what}: {figure}" for what, figure in rows)]
    if model.limits:
        lines += ["  limits:", *(f"    - {limit}" for limit in model.limits)]
    return "\n".join(lines)

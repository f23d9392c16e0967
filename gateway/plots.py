"""Pictures of a timeline: every class's probability over time and the coloured strip under the
player, as inline SVG made here (no script, no library, allowed by the site's content policy),
and the same plot as a PNG for download (matplotlib, loaded only then).

Colours are the Okabe-Ito palette, told apart with any kind of colour vision; the windows list
beside them says everything in words as well.
"""

from __future__ import annotations

import io
from typing import Any

from markupsafe import Markup, escape

from .models import Analysis

__all__ = ["COLOURS", "colour", "probability_png", "probability_svg", "strip_svg"]

COLOURS = {
    "angry": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "fearful": "#CC79A7",  # RAVDESS's word, used by the fused labels
    "happy": "#E69F00",
    "sad": "#0072B2",
    "surprise": "#56B4E9",
    "surprised": "#56B4E9",
    "neutral": "#7A7A7A",
    "calm": "#44AA99",
}
NOT_JUDGED = "#E3E7EC"  # a window with nothing to judge, or an untrained model's
_OTHERS = ("#882255", "#332288", "#999933", "#117733")

# The plot's frame, in SVG user units (it scales with the page).
_W, _H = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 10, 28


def colour(label: str | None, labels: list[str] | None = None) -> str:
    if label is None:
        return NOT_JUDGED
    if label in COLOURS:
        return COLOURS[label]
    index = (labels or []).index(label) if label in (labels or []) else len(label)
    return _OTHERS[index % len(_OTHERS)]


def _span(document: dict[str, Any]) -> float:
    return max((w["end_s"] for w in document["windows"]), default=0.0) or 1.0


def strip_svg(document: dict[str, Any], *, clickable: bool = True) -> Markup:
    """One rectangle per window, coloured by its label, as wide as the window lasts; each one
    seeks the player to the window's start (``data-seek``, see static/analysis.js)."""
    end = _span(document)
    parts = ['<svg class="strip" viewBox="0 0 1000 24" preserveAspectRatio="none" role="group" aria-label="Windows over time">']
    for w in document["windows"]:
        x, width = 1000 * w["start_s"] / end, max(1000 * (w["end_s"] - w["start_s"]) / end, 1.0)
        title = f"{_clock(w['start_s'])} to {_clock(w['end_s'])}: {w['caption']}"
        seek = f' data-seek="{w["start_s"]}" tabindex="0" role="button"' if clickable else ""
        parts.append(f'<rect x="{x:.2f}" y="0" width="{width:.2f}" height="24" fill="{colour(w["label"], document["labels"])}"'
                     f' class="cell" data-index="{w["index"]}"{seek}><title>{escape(title)}</title></rect>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def probability_svg(document: dict[str, Any]) -> Markup:
    """Each label's probability at the middle of each window, one line per label; a window with
    no probabilities (nothing to judge, or an untrained model) breaks the lines."""
    end = _span(document)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + plot_w * t / end

    def y(p: float) -> float:
        return _TOP + plot_h * (1 - p)

    parts = [f'<svg class="plot" viewBox="0 0 {_W} {_H}" role="img" aria-label="Probability of each emotion over time, '
             'window by window; the windows list says the same in words">']  # fmt: skip
    for p in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(p):.1f}" y2="{y(p):.1f}" class="grid"/>'
                     f'<text x="{_LEFT - 6}" y="{y(p) + 4:.1f}" class="tick" text-anchor="end">{round(p * 100)} %</text>')  # fmt: skip
    for t in _ticks(end):
        parts.append(f'<text x="{x(t):.1f}" y="{_H - 8}" class="tick" text-anchor="middle">{_clock(t, short=True)}</text>')
    for label in document["labels"]:
        for run in _runs(document["windows"], label):
            points = " ".join(f"{x(t):.1f},{y(p):.1f}" for t, p in run)
            hue = colour(label, document["labels"])
            if len(run) == 1:
                (t, p), = run
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(p):.1f}" r="3" fill="{hue}"><title>{escape(label)}</title></circle>')
            else:
                parts.append(f'<polyline points="{points}" fill="none" stroke="{hue}" stroke-width="2.2" '
                             f'stroke-linejoin="round"><title>{escape(label)}</title></polyline>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))


def _runs(windows: list[dict[str, Any]], label: str) -> list[list[tuple[float, float]]]:
    """Unbroken stretches of (window middle, probability of ``label``)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for w in windows:
        probabilities = w["probabilities"]
        if probabilities is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(((w["start_s"] + w["end_s"]) / 2, float(probabilities.get(label, 0.0))))
    return [run for run in runs if run]


def _ticks(end: float) -> list[float]:
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if end / s <= 8)
    return [i * step for i in range(int(end // step) + 1)]


def _clock(seconds: float, *, short: bool = False) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{int(rest):02d}" if short else f"{int(minutes)}:{rest:04.1f}"


def probability_png(analysis: Analysis, document: dict[str, Any]) -> bytes:
    """The probability plot as a PNG of 1200 x 480 pixels, titled with the analysis's name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=120)
    FigureCanvasAgg(figure)  # no pyplot: no global state shared between requests
    axes = figure.add_subplot()
    for label in document["labels"]:
        for i, run in enumerate(_runs(document["windows"], label)):
            times, probabilities = zip(*run)
            axes.plot(times, probabilities, marker="o", markersize=3, linewidth=2, color=colour(label, document["labels"]),
                      label=label if i == 0 else None)  # fmt: skip
    axes.set_xlim(0, _span(document))
    axes.set_ylim(0, 1)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("probability")
    axes.set_title(f"{analysis.name[:80]}: {analysis.mode or ''} mode, {document['model']}", fontsize=10)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    else:
        axes.text(0.5, 0.5, "no window was judged by a trained model", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()

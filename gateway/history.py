"""The home page: the signed-in user's analyses, newest first, a page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ExecutableOption

from .db import get_session
from .models import Analysis

__all__ = ["PAGE_SIZE", "HistoryPage", "bp", "history_page"]

bp = Blueprint("history", __name__)

PAGE_SIZE = 20

#: What each mode is called on the page (see ``serving.MODES``; None: chosen from the recording).
MODE_NAMES = {
    None: "Automatic",
    "face": "Face",
    "audio": "Voice",
    "av": "Face and voice",
    "attention": "Face and voice (attention model)",
    "trial": "Face, voice and EEG",
}


@dataclass(frozen=True)
class HistoryPage:
    """One page of a user's analyses; ``number`` counts from 1."""

    analyses: list[Analysis]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def history_page(session: Session, user_id: int, number: int = 1, size: int = PAGE_SIZE, query: str | None = None,
                 loads: Sequence[ExecutableOption] = ()) -> HistoryPage:  # fmt: skip
    """Page ``number`` of the user's analyses, newest first; a number past the end gives the last page.

    ``query`` keeps the analyses whose name holds it, in any case (``%`` and ``_`` match themselves).
    ``loads``: what the caller reads of each beyond its row, loaded for the whole page at once
    (:data:`gateway.results.DOCUMENT_LOADS`), not one query an analysis.
    """
    mine = and_(Analysis.user_id == user_id, _name_holds(query)) if query else Analysis.user_id == user_id
    total = session.scalar(select(func.count()).select_from(Analysis).where(mine)) or 0
    number = min(max(1, number), max(1, -(-total // size)))
    analyses = session.scalars(
        select(Analysis).where(mine).order_by(Analysis.created_at.desc(), Analysis.id.desc())
        .offset((number - 1) * size).limit(size).options(*loads)
    ).all()  # fmt: skip
    return HistoryPage(list(analyses), number, size, total)


def _name_holds(query: str) -> ColumnElement[bool]:
    escaped = query.strip()[:200].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(Analysis.name).like(f"%{escaped.lower()}%", escape="\\")


@bp.app_template_filter("mode_name")
def mode_name(mode: str | None) -> str:
    return MODE_NAMES.get(mode, mode or "Automatic")


@bp.get("/")
@login_required
def index() -> str:
    """The user's analyses; ``?page=N`` for older ones, ``?q=TEXT`` for those whose name holds it."""
    query = request.args.get("q", "").strip()[:200]
    page = history_page(get_session(), current_user.id, request.args.get("page", 1, type=int), query=query or None)
    return render_template("history/index.html", page=page, query=query)

"""The routes a page or a program polls read the database a fixed number of times: a page of 20
analyses as often as a page of 5, an analysis of 40 windows as often as one of 1.

Statements are counted as the database gets them (SQLAlchemy's ``before_cursor_execute``), once on
SQLite and once on a real PostgreSQL (skipped, saying why, where its binaries are absent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from gateway.db import engine_of
from gateway.models import User
from gateway.testing_flow import api_user, finished_analysis, gateway_app, signed_in

FEW = 6  # BEGIN (SQLite), the token, its user, then the count and the page, or the analysis, then its verdicts or windows


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Flask:
    return gateway_app(tmp_path / "data", database_url=database_url)


@contextlib.contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    """The statements sent on ``engine`` while the block runs."""
    statements: list[str] = []

    def count(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _statements(app: Flask, web: FlaskClient, path: str, **request: Any) -> list[str]:
    """What a poll of ``path`` sends: the second request, as the first may also note the token's use."""
    web.get(path, **request)
    with counted(engine_of(app)) as statements:
        response = web.get(path, **request)
    assert response.status_code == 200, response.text
    return statements


def _analyses(app: Flask, user_id: int, count: int, windows: int) -> list[int]:
    with Session(engine_of(app)) as session:
        return [finished_analysis(session, user_id, f"Interview {n}", windows) for n in range(count)]


def test_a_page_of_the_list_reads_as_often_for_20_analyses_as_for_5(app: Flask) -> None:
    user_id, headers = api_user(app, "list@example.org")
    _analyses(app, user_id, 20, windows=3)
    web = app.test_client()
    five = _statements(app, web, "/api/v1/analyses?per_page=5", headers=headers)
    twenty = _statements(app, web, "/api/v1/analyses?per_page=20", headers=headers)
    assert len(five) == len(twenty) <= FEW, twenty
    items = web.get("/api/v1/analyses?per_page=20", headers=headers).json["items"]
    assert len(items) == 20 and all(item["windows"] == 3 and item["verdict"]["label"] == "happy" for item in items)
    assert all(item["recording"]["kind"] == "video" and "csv" in item["files"] for item in items)


@pytest.mark.parametrize("route", ["/api/v1/analyses/{id}", "/api/v1/analyses/{id}/timeline"])
def test_a_status_and_a_timeline_read_as_often_for_40_windows_as_for_1(app: Flask, route: str) -> None:
    user_id, headers = api_user(app, "poll@example.org")
    one, forty = _analyses(app, user_id, 1, windows=1) + _analyses(app, user_id, 1, windows=40)
    web = app.test_client()
    counts = [len(_statements(app, web, route.format(id=analysis_id), headers=headers)) for analysis_id in (one, forty)]
    assert counts[0] == counts[1] <= FEW, counts


def test_the_pages_status_and_history_read_a_few_times(app: Flask) -> None:
    web = signed_in(app, "page@example.org")
    with Session(engine_of(app)) as session:
        user_id = session.scalar(select(User.id).where(User.email == "page@example.org"))
    one, forty = _analyses(app, user_id, 1, windows=1) + _analyses(app, user_id, 1, windows=40)
    counts = [len(_statements(app, web, f"/analyses/{analysis_id}/status")) for analysis_id in (one, forty)]
    assert counts[0] == counts[1] <= FEW, counts
    first = len(_statements(app, web, "/"))
    _analyses(app, user_id, 18, windows=3)
    assert len(_statements(app, web, "/")) == first <= FEW

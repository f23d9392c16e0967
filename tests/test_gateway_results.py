"""The result pages and files: the player with its clickable strip and windows, the plot, the
verdict, the models that answered, downloads (range requests, JSON, CSV, PNG), sound files and
photos, untrained models, the comparison of face, voice and both, and the history's actions.

Real recordings made here are uploaded through the page and the API and analysed by the real
job runner against the real Triton of tests/conftest.py, once for the module.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import soundfile
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import create_app
from gateway.config import Config
from gateway.db import engine_of
from gateway.models import User
from gateway.testing import csrf_token
from gateway.testing_flow import owned_counts, page_upload, runner_for, signed_in, stored_files
from gateway.tokens import create_token
from preprocessing.synthesis import SampleSpec, astronaut_face, write_sample_video


class Site:
    """One signed-in user of one gateway, with a token for the API, and the analyses made for the module."""

    def __init__(self, app: Flask, web: FlaskClient, headers: dict[str, str], user_id: int) -> None:
        self.app, self.web, self.headers, self.user_id = app, web, headers, user_id
        self.ids: dict[str, int] = {}

    def api(self, path: str, **request: Any) -> Any:
        return self.app.test_client().get(f"/api/v1{path}", headers={**self.headers, **request.pop("headers", {})}, **request)

    def upload(self, key: str, path: Path, **form: str) -> int:
        response = self.app.test_client().post("/api/v1/analyses", headers=self.headers, content_type="multipart/form-data",
                                               data={"recording": (io.BytesIO(path.read_bytes()), path.name), "consent": "true", **form})  # fmt: skip
        assert response.status_code == 201, response.json
        self.ids[key] = response.json["id"]
        return self.ids[key]


def _sound_of(video: Path, out: Path) -> Path:
    with av.open(str(video)) as container:
        samples = np.concatenate([frame.to_ndarray().mean(axis=0) for frame in container.decode(audio=0)])
        rate = container.streams.audio[0].rate
    soundfile.write(out, samples.astype(np.float32), rate)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, triton: Any) -> Site:
    root = tmp_path_factory.mktemp("results")
    video = write_sample_video(root / "talk.mp4", SampleSpec(duration_s=7.2, width=320, height=180, face_height=120))
    sound = _sound_of(video, root / "voice.wav")
    photo = root / "portrait.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2BGR))
    app = create_app(Config.from_env({"EMOFUSE_DATA_DIR": str(root / "data")}))
    web = signed_in(app, "clinician@example.org")
    with Session(engine_of(app)) as session:
        user = session.scalar(select(User).where(User.email == "clinician@example.org"))
        _, secret = create_token(session, user, "tests")
        user_id = user.id
    result = Site(app, web, {"Authorization": f"Bearer {secret}"}, user_id)
    page = page_upload(web, {"recording": (io.BytesIO(video.read_bytes()), "Talk with Ana.mp4")})
    assert page.status_code == 303
    result.ids["video"] = int(page.headers["Location"].rsplit("/", 1)[1])
    result.ids["queued_page"] = result.ids["video"]
    result.upload("sound", sound)
    result.upload("photo", photo)
    result.upload("attention", video, mode="attention", name="Attention model")
    runner = runner_for(app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    return result


def _page(site: Site, name: str, suffix: str = "") -> str:
    response = site.web.get(f"/analyses/{site.ids[name]}{suffix}")
    assert response.status_code == 200
    return response.text


# The result page


def test_the_result_page_has_the_player_the_strip_the_windows_the_plot_and_the_verdict(site: Site) -> None:
    html = _page(site, "video")
    document = site.api(f"/analyses/{site.ids['video']}/timeline").json
    analysis_id = site.ids["video"]
    assert f'<video id="player" controls preload="metadata" playsinline src="/analyses/{analysis_id}/files/video">' in html
    starts = [w["start_s"] for w in document["windows"]]
    assert len(starts) == 2
    assert re.findall(r'<rect [^>]*data-seek="([^"]+)"', html) == [str(s) for s in starts]  # the strip
    assert re.findall(r'<button type="button" class="window" data-seek="([^"]+)"', html) == [str(s) for s in starts]  # the list
    for window in document["windows"]:
        assert window["caption"] in html
    assert html.count("<polyline ") + html.count("<circle ") >= len(document["labels"])  # a line per label
    verdict = document["verdict"]
    assert f'{verdict["label"]}</p>' in html and f'{round(verdict["confidence"] * 100)} % confidence' in html
    assert "Face model (CNNs trained on FER-2013" in html and "Voice model (speech CNNs" in html and "trained on real data" in html
    assert html.count('class="badge untrained"') == 0
    for kind in ("video", "json", "csv", "plot"):
        assert f'href="/analyses/{analysis_id}/files/{kind}?download=1"' in html
    assert 'id="progress" class="card progress"' in html and "hidden>" in html  # finished: no progress bar shown


def test_the_strip_draws_each_window_as_wide_as_it_lasts(site: Site) -> None:
    html = _page(site, "video")
    cells = re.findall(r'<rect x="([\d.]+)" y="0" width="([\d.]+)"', html)
    document = site.api(f"/analyses/{site.ids['video']}/timeline").json
    end = max(w["end_s"] for w in document["windows"])
    for (x, width), window in zip(cells, document["windows"]):
        assert float(x) == pytest.approx(1000 * window["start_s"] / end, abs=0.01)
        assert float(width) == pytest.approx(1000 * (window["end_s"] - window["start_s"]) / end, abs=0.01)


def test_the_annotated_video_is_served_with_range_requests_and_decodes(site: Site, tmp_path: Path) -> None:
    url = f"/analyses/{site.ids['video']}/files/video"
    part = site.web.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and len(part.data) == 1000
    whole = site.web.get(url)
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes" and whole.mimetype == "video/mp4"
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(whole.data)}" and part.data == whole.data[100:1100]
    download = site.web.get(url + "?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment; filename=")
    assert "Talk with Ana.annotated.mp4" in download.headers["Content-Disposition"]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(whole.data)
    with av.open(str(copy)) as container:
        assert container.streams.video[0].codec_context.name == "h264" and container.streams.audio
        assert float(container.duration / av.time_base) == pytest.approx(7.2, abs=0.2)


def test_the_json_and_csv_downloads_hold_every_window_and_every_probability(site: Site) -> None:
    analysis_id = site.ids["video"]
    document = site.api(f"/analyses/{analysis_id}/timeline").json
    assert site.web.get(f"/analyses/{analysis_id}/files/json").json == document
    rows = list(csv.reader(io.StringIO(site.web.get(f"/analyses/{analysis_id}/files/csv?download=1").text)))
    assert rows[0] == ["start_s", "end_s", "label", *document["labels"], "status"]
    assert len(rows) == 1 + len(document["windows"])
    for row, window in zip(rows[1:], document["windows"]):
        assert [float(row[0]), float(row[1]), row[2], row[-1]] == [window["start_s"], window["end_s"], window["label"], "ok"]
        probabilities = [float(value) for value in row[3:-1]]
        assert probabilities == [window["probabilities"][label] for label in document["labels"]]
        assert sum(probabilities) == pytest.approx(1.0, abs=0.01)


def test_the_plot_downloads_as_a_png(site: Site) -> None:
    response = site.web.get(f"/analyses/{site.ids['video']}/files/plot?download=1")
    assert response.mimetype == "image/png" and response.data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 1200, 3) and image.std() > 10  # a picture, not a blank


def test_a_sound_file_gets_an_audio_player_and_no_video(site: Site) -> None:
    html = _page(site, "sound")
    analysis_id = site.ids["sound"]
    assert f'<audio id="player" controls preload="metadata" src="/analyses/{analysis_id}/files/recording">' in html
    assert site.web.get(f"/analyses/{analysis_id}/files/recording", headers={"Range": "bytes=0-43"}).status_code == 206
    assert site.web.get(f"/analyses/{analysis_id}/files/video").status_code == 404
    status = site.api(f"/analyses/{analysis_id}").json
    assert status["mode"] == "audio" and status["status"] == "done" and "video" not in status["files"]


def test_a_photo_shows_its_annotated_copy_and_a_result_per_face(site: Site) -> None:
    html = _page(site, "photo")
    analysis_id = site.ids["photo"]
    assert f'<img class="photo" src="/analyses/{analysis_id}/files/image"' in html
    assert "Face 1" in html and "<polyline" not in html
    image = site.web.get(f"/analyses/{analysis_id}/files/image")
    assert image.mimetype == "image/png" and cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_an_untrained_model_is_never_shown_as_an_emotion(site: Site) -> None:
    analysis_id = site.ids["attention"]
    document = site.api(f"/analyses/{analysis_id}/timeline").json
    assert document["weights"] == "untrained" and document["verdict"] is None
    assert all(w["status"] == "untrained" and w["label"] is None and w["probabilities"] is None for w in document["windows"])
    assert document["models_used"] == [{"model": "av_attention", "name": "Audio-video attention model", "windows": 2, "of": 2,
                                        "trained": False}]  # fmt: skip
    html = _page(site, "attention")
    assert "Untrained model" in html and 'class="badge untrained"' in html and "<polyline" not in html
    windows = html.split('<ol class="windows">', 1)[1]
    assert not any(f">{label}" in windows or f"{label} " in windows for label in document["labels"])
    rows = list(csv.reader(io.StringIO(site.web.get(f"/analyses/{analysis_id}/files/csv").text)))
    assert all(set(row[2:-1]) == {""} and row[-1] == "untrained" for row in rows[1:])


# Progress


def test_before_its_job_runs_the_page_follows_the_progress(site: Site, tmp_path: Path) -> None:
    video = write_sample_video(tmp_path / "later.mp4", SampleSpec(duration_s=2.0, width=320, height=180, face_height=120))
    analysis_id = site.upload("later", video)
    html = _page(site, "later")
    assert f'data-poll="/analyses/{analysis_id}/status"' in html and f'data-fragment="/analyses/{analysis_id}/result"' in html
    assert "Waiting for a worker" in html and 'value="0"' in html
    assert "Results on their way" in _page(site, "later", "/result")
    status = site.web.get(f"/analyses/{analysis_id}/status").json
    assert (status["status"], status["percent"], status["timeline_ready"], status["version"]) == ("queued", 0, False, "queued:0:")
    assert '<script src="/static/analysis.js" defer></script>' in html
    assert site.web.get("/static/analysis.js").status_code == 200


# Compare


def test_the_comparison_judges_the_recording_by_face_voice_and_both_side_by_side(site: Site, triton: Any) -> None:
    recording_id = site.api(f"/analyses/{site.ids['video']}").json["recording"]["id"]
    page = site.web.get(f"/recordings/{recording_id}/compare")
    assert "Judge it by face, voice and both" in page.text
    started = site.web.post(f"/recordings/{recording_id}/compare", data={"csrf_token": csrf_token(site.web, f"/recordings/{recording_id}/compare")})
    assert started.status_code == 303
    runner = runner_for(site.app, triton.grpc_url)
    runner.work(burst=True)
    runner.close()
    modes = site.api(f"/recordings/{recording_id}/comparison").json["modes"]
    assert {mode: (a["status"], a["mode"]) for mode, a in modes.items()} == {"face": ("done", "face"), "audio": ("done", "audio"),
                                                                             "av": ("done", "av")}  # fmt: skip
    assert modes["av"]["id"] == site.ids["video"]  # the analysis it started from
    assert modes["face"]["files"].get("video") is None  # judged for the comparison: no second annotated copy
    html = site.web.get(f"/recordings/{recording_id}/compare").text
    assert html.count('class="card column"') == 3 and html.count('<svg class="strip"') == 3
    for analysis in modes.values():
        assert f'{analysis["verdict"]["label"]}</p>' in html
    assert "Judge it by face, voice and both" not in html  # all three there


# History


def test_the_history_finds_renames_and_deletes(site: Site, tmp_path: Path, triton: Any) -> None:
    video = write_sample_video(tmp_path / "search.mp4", SampleSpec(duration_s=2.0, width=320, height=180, face_height=120))
    analysis_id = site.upload("search", video, name="Séance with Bob_1 (50%)")
    found = site.web.get("/?q=bob_1 (50%").text
    assert "Séance with Bob_1 (50%)" in found and "Talk with Ana" not in found
    assert "No analysis is named like" in site.web.get("/?q=bob_2").text
    assert site.api("/analyses?q=S%C3%A9ANCE").json["total"] == 1

    token = csrf_token(site.web, "/")
    renamed = site.web.post(f"/analyses/{analysis_id}/rename", data={"csrf_token": token, "name": "  Bob,  second visit ", "next": "/?q=bob"})
    assert renamed.status_code == 303 and renamed.headers["Location"] == "/?q=bob"
    assert site.api(f"/analyses/{analysis_id}").json["name"] == "Bob, second visit"
    patched = site.app.test_client().patch(f"/api/v1/analyses/{analysis_id}", json={"name": "Bob (API)"}, headers=site.headers)
    assert patched.status_code == 200 and patched.json["name"] == "Bob (API)"
    refused = site.web.post(f"/analyses/{analysis_id}/rename", data={"csrf_token": token, "name": "   "})
    assert "Enter a name for the analysis." in site.web.get(refused.headers["Location"]).text

    before = set(stored_files(site.app, site.user_id))
    deleted = site.web.post(f"/analyses/{analysis_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/"
    assert "“Bob (API)” and its files are deleted." in site.web.get("/").text
    assert site.api(f"/analyses/{analysis_id}").status_code == 404
    assert len(before - set(stored_files(site.app, site.user_id))) == 1  # its recording's file (it was never run)


def test_deleting_every_analysis_leaves_nothing_on_disk_or_in_the_database(site: Site) -> None:
    """The last test of the module: the analyses, their windows, verdicts, jobs and files, and the
    recordings shared by a comparison, all go; the account stays."""
    token = csrf_token(site.web, "/")
    ids = [item["id"] for item in site.api("/analyses?per_page=100").json["items"]]
    assert len(ids) >= 7 and owned_counts(site.app, site.user_id)["Window"] > 0
    for i, analysis_id in enumerate(ids):
        if i % 2:
            assert site.app.test_client().delete(f"/api/v1/analyses/{analysis_id}", headers=site.headers).status_code == 204
        else:
            assert site.web.post(f"/analyses/{analysis_id}/delete", data={"csrf_token": token}).status_code == 303
    assert owned_counts(site.app, site.user_id) == {"Recording": 0, "Analysis": 0, "Window": 0, "Verdict": 0, "Job": 0, "User": 1}
    assert stored_files(site.app, site.user_id) == []
    assert "No analyses yet" in site.web.get("/").text

"""Analyse a recording with emofuse's HTTP API: upload it, follow the analysis, print the timeline,
download the annotated video and the CSV.

Only the Python standard library is needed (3.9 or later). Make a token on emofuse's Settings page
(API tokens: it is shown once), then::

    python deploy/examples/client.py interview.mp4 --url http://127.0.0.1:5000 --token emo_...
    EMOFUSE_TOKEN=emo_... python deploy/examples/client.py interview.mp4 --out results/

Exit status: 0 when the analysis is done and its files are saved; 1 when the API refuses (its
message and code are printed) or the analysis fails; 2 for wrong arguments. The API is described
at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import argparse
import email.message
import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024


class ApiError(Exception):
    """The API answered with an error (or could not be reached): its message, code and status."""

    def __init__(self, message: str, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status

    def __str__(self) -> str:
        status = f"HTTP {self.status}, " if self.status else ""
        return f"{self.message} ({status}{self.code})"


class Client:
    """A few calls of emofuse's API, with a bearer token."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self.base, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    def open(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """The response to ``method path`` (an open file-like object); ApiError for any error."""
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"Authorization": f"Bearer {self.token}", **(headers or {})})  # fmt: skip
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            raise _api_error(err) from None
        except (urllib.error.URLError, OSError) as err:
            raise ApiError(f"Cannot reach {self.base}: {getattr(err, 'reason', err)}", "unreachable") from None

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self.open(method, path, **kwargs) as response:
            return json.load(response)

    def upload(self, recording: Path, *, name: str | None = None, mode: str | None = None) -> dict[str, Any]:
        """Send ``recording`` (streamed, not read into memory) and queue its analysis; the new analysis."""
        fields = {"consent": "true", **({"name": name} if name else {}), **({"mode": mode} if mode else {})}
        boundary = uuid.uuid4().hex
        head, tail = _multipart_head(boundary, fields, recording), f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(head) + recording.stat().st_size + len(tail)),
                   "Idempotency-Key": uuid.uuid4().hex}  # fmt: skip
        return self.json("POST", "/api/v1/analyses", body=_chunks(head, recording, tail), headers=headers)

    def download(self, path: str, folder: Path, fallback: str) -> Path:
        """Save the file at ``path`` into ``folder`` under the name the API gives it; its path."""
        with self.open("GET", path) as response:
            target = folder / _file_name(response.headers.get("Content-Disposition", ""), fallback)
            with target.open("wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
        return target


def _api_error(err: urllib.error.HTTPError) -> ApiError:
    try:
        error = json.load(err)["error"]
        return ApiError(error["message"], error["code"], err.code)
    except (ValueError, KeyError, TypeError):
        return ApiError(err.reason or "The server answered with an error.", "http_error", err.code)


def _multipart_head(boundary: str, fields: dict[str, str], recording: Path) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n' for key, value in fields.items()]
    media_type = mimetypes.guess_type(recording.name)[0] or "application/octet-stream"
    filename = recording.name.replace('"', "")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="recording"; filename="{filename}"\r\n'
                 f"Content-Type: {media_type}\r\n\r\n")  # fmt: skip
    return "".join(parts).encode()


def _chunks(head: bytes, recording: Path, tail: bytes) -> Iterator[bytes]:
    yield head
    with recording.open("rb") as file:
        while chunk := file.read(CHUNK):
            yield chunk
    yield tail


def _file_name(disposition: str, fallback: str) -> str:
    message = email.message.Message()
    message["Content-Disposition"] = disposition
    return Path(message.get_filename() or fallback).name or fallback  # never a path the server chose


def follow(client: Client, analysis: dict[str, Any], *, every_s: float = 1.0, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Poll the analysis until it is done, printing each new stage and percentage; the final analysis.

    Raises ApiError when it fails (with the analysis's own code) or takes longer than ``timeout_s``.
    """
    deadline, shown = time.monotonic() + timeout_s, None
    while True:
        line = f"{analysis['percent']:3d} %  {analysis['stage_label'] or analysis['status']}"
        if line != shown:
            print(line, flush=True)
            shown = line
        if analysis["status"] == "done":
            return analysis
        if analysis["status"] == "failed":
            error = analysis.get("error") or {}
            raise ApiError(f"The analysis failed: {error.get('message')}", error.get("code") or "failed")
        if time.monotonic() > deadline:
            raise ApiError(f"The analysis took longer than {timeout_s:g} s; it goes on: {analysis['links']['self']}", "timeout")
        time.sleep(every_s)
        analysis = client.json("GET", analysis["links"]["self"])


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def print_timeline(timeline: dict[str, Any]) -> None:
    """One row per window: its span, what the models found, and the label's probability."""
    print(f"\n{'window':>6}  {'from':>7}  {'to':>7}  {'label':<10} {'prob':>5}  caption")
    for window in timeline["windows"]:
        label = window["label"] or "-"
        probability = f"{100 * window['probabilities'][label]:.0f} %" if window["probabilities"] and window["label"] else "-"
        print(f"{window['index']:>6}  {clock(window['start_s']):>7}  {clock(window['end_s']):>7}  {label:<10} {probability:>5}  "
              f"{window['caption']}")  # fmt: skip
    verdict = timeline.get("verdict")
    if timeline["weights"] == "untrained":
        print("\nThe model that answered is untrained: its labels mean nothing and are withheld.")
    elif verdict:
        print(f"\nVerdict: {verdict['label']} ({100 * verdict['confidence']:.0f} %, from {verdict['windows']} windows)")


def save_files(client: Client, analysis: dict[str, Any], folder: Path) -> list[Path]:
    """Download the annotated copy (video, or photo) and the CSV; say why a copy is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for kind in ("video", "image", "csv"):
        if kind in analysis["files"]:
            saved.append(client.download(analysis["files"][kind], folder, f"analysis-{analysis['id']}.{kind}"))
            print(f"Saved {saved[-1]}")
    for kind, why in (analysis.get("failures") or {}).items():
        print(f"No {kind} file: {why}")
    return saved


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Analyse a recording with emofuse's API and download the results.")
    parser.add_argument("recording", type=Path, help="a video, a sound file or a photo")
    parser.add_argument("--url", default=os.environ.get("EMOFUSE_URL", "http://127.0.0.1:5000"),
                        help="emofuse's address (default: $EMOFUSE_URL or %(default)s)")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("EMOFUSE_TOKEN"), help="an API token, emo_... (default: $EMOFUSE_TOKEN)")
    parser.add_argument("--name", help="what to call the analysis (default: the file's name)")
    parser.add_argument("--mode", choices=["face", "audio", "av", "attention"], help="default: all the recording has")
    parser.add_argument("--out", type=Path, default=Path("."), help="where to save the files (default: here)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between polls (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give an API token: --token emo_... or EMOFUSE_TOKEN (make one on the Settings page)")
    if not args.recording.is_file():
        parser.error(f"no such file: {args.recording}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = Client(args.url, args.token)
    try:
        analysis = client.upload(args.recording, name=args.name, mode=args.mode)
        print(f"Uploaded {args.recording.name} as analysis {analysis['id']} ({analysis['mode_label']})")
        analysis = follow(client, analysis, every_s=args.every)
        print_timeline(client.json("GET", analysis["links"]["timeline"]))
        save_files(client, analysis, args.out)
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Labelled recordings for the audio-video model, cut into windows once and cached.

Two ways to name them:

- a **manifest CSV** with the columns ``path`` (absolute, or relative to the CSV's folder),
  ``label`` and ``speaker``, one row per recording, and optionally ``audio`` (a separate sound
  file for a video without its own track);
- a **RAVDESS folder** (``Actor_XX/01-01-...mp4``): speech videos, modality 01 (audio-video)
  as they are, modality 02 (video only) paired with the audio-only file (03) of the same
  emotion, intensity, statement, repetition and actor where one is there.

Each recording goes through :func:`preprocessing.windows.read_windows` exactly as in serving
(face crops of 15 frames per window, audio at 22,050 Hz), its audio into
:func:`preprocessing.audio_features.mfcc`. The arrays of each recording are cached in
``cache_dir`` under a key made of the file (path, size, modification time) and every setting
that shapes them, so a second epoch, run or model never decodes the media again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.emotions import RAVDESS
from preprocessing.av_inputs import AV_MFCC, av_arrays
from preprocessing.errors import RecordingError
from preprocessing.faces import CropSpec, FaceDetector
from preprocessing.recording import probe
from preprocessing.windows import WindowSpec, read_windows
from training.av import AVWindows
from training.ravdess import parse_name

__all__ = ["LabelledRecording", "read_manifest", "ravdess_recordings", "load_windows", "default_cache_dir"]

log = logging.getLogger(__name__)

_CACHE_VERSION = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class LabelledRecording:
    """One recording with its label and speaker; ``audio``: a separate sound file, if any."""

    path: Path
    label: str
    speaker: str
    audio: Path | None = None


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/emofuse/windows`` (``~/.cache/emofuse/windows``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emofuse" / "windows"


def read_manifest(path: str | Path) -> list[LabelledRecording]:
    """The recordings a manifest CSV lists.

    Raises
    ------
    ValueError
        A column is missing, a row is incomplete or names a file that is not there; the message
        gives the CSV's line.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "speaker"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: the columns {sorted(missing)} are missing; give path, label, speaker (and optionally audio).")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not all((row.get(k) or "").strip() for k in ("path", "label", "speaker")):
                raise ValueError(f"{path}, line {line}: path, label and speaker must all be given.")
            files = [path.parent / row["path"].strip()] + ([path.parent / row["audio"].strip()] if (row.get("audio") or "").strip() else [])
            for file in files:
                if not file.is_file():
                    raise ValueError(f"{path}, line {line}: {file} is not there.")
            rows.append(LabelledRecording(files[0], row["label"].strip(), row["speaker"].strip(), files[1] if len(files) > 1 else None))
    if not rows:
        raise ValueError(f"{path}: no recordings listed.")
    return rows


def ravdess_recordings(root: str | Path) -> list[LabelledRecording]:
    """The speech videos of a RAVDESS folder, paired with their audio-only files where needed."""
    root = Path(root)
    videos, sounds = [], {}
    for file in sorted(root.glob("Actor_*/*")):
        try:
            clip = parse_name(file)
        except ValueError:
            continue  # not a RAVDESS file: README, labels...
        if clip.channel != 1:
            continue  # song
        key = (clip.emotion, clip.intensity, clip.statement, clip.repetition, clip.actor)
        if clip.modality == 3:
            sounds[key] = file
        else:
            videos.append((clip, key))
    if not videos:
        raise ValueError(f"{root}: no RAVDESS speech videos (Actor_XX/01-01-*.mp4 or 02-01-*.mp4).")
    out = []
    for clip, key in videos:
        audio = sounds.get(key) if clip.modality == 2 else None
        out.append(LabelledRecording(clip.path, RAVDESS[clip.label], f"{clip.actor:02d}", audio))
    return out


def _file_key(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cache_key(recording: LabelledRecording, spec: WindowSpec, crop: CropSpec, detector: FaceDetector) -> str:
    settings = {
        "version": _CACHE_VERSION,
        "video": _file_key(recording.path),
        "audio": recording.audio and _file_key(recording.audio),
        "window": asdict(spec),
        "crop": asdict(crop),
        "detector": repr(detector),
        "mfcc": AV_MFCC.to_dict(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def _windows(recording: LabelledRecording, spec: WindowSpec, crop: CropSpec, detector: FaceDetector) -> dict[str, np.ndarray]:
    """faces (W, 15, S, S[, 3]), face_found (W, 15), mfcc (W, 10, 156), audio_present (W,)."""
    windows = list(read_windows(probe(recording.path), spec, crop=crop, detector=detector))
    audio = [w.audio for w in windows]
    if recording.audio is not None:  # a separate track, cut the same way, window by window
        track = [w.audio for w in read_windows(probe(recording.audio), spec)]
        audio = [track[i] if i < len(track) else None for i in range(len(windows))]
    return av_arrays(windows, audio)


def load_windows(
    recordings: list[LabelledRecording],
    labels: tuple[str, ...],
    *,
    spec: WindowSpec = WindowSpec(),
    crop: CropSpec = CropSpec(size=64, grey=True),
    detector: FaceDetector | None = None,
    cache_dir: str | Path | None = None,
) -> AVWindows:
    """All windows of ``recordings`` as model inputs, from the cache where it has them.

    Speakers become integer ids in sorted order of their names; ``emofuse train av`` tests on the
    last ones (:func:`training.trials.ordered_split`).

    Raises
    ------
    ValueError
        A label is not in ``labels``, or a recording cannot be read (the message names it).
    """
    unknown = sorted({r.label for r in recordings} - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the label set {list(labels)}.")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    detector = detector or FaceDetector()
    speaker_ids = {name: i for i, name in enumerate(sorted({r.speaker for r in recordings}))}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("faces", "face_found", "mfcc", "audio_present", "labels", "speakers")}
    for recording in recordings:
        file = cache / f"{_cache_key(recording, spec, crop, detector)}.npz"
        if file.is_file():
            with np.load(file) as cached:
                arrays = {k: cached[k] for k in cached.files}
        else:
            try:
                arrays = _windows(recording, spec, crop, detector)
            except RecordingError as err:
                raise ValueError(f"{err}; fix or remove it from the data.") from err
            part = file.with_name(file.stem + ".part.npz")
            np.savez(part, **arrays)
            part.replace(file)  # whole or absent: an interrupted run leaves no broken entry
        n = len(arrays["mfcc"])
        for key, value in arrays.items():
            parts[key].append(value)
        parts["labels"].append(np.full(n, labels.index(recording.label), np.int64))
        parts["speakers"].append(np.full(n, speaker_ids[recording.speaker], np.int64))
    log.info("%d windows of %d recordings", sum(len(x) for x in parts["labels"]), len(recordings))
    return AVWindows(**{k: np.concatenate(v) for k, v in parts.items()}, label_names=tuple(labels))

"""A trial folder uploaded as one .zip: its manifest, the trial to judge, and that trial's files
unpacked into a folder of the caller's, each under a generated name.

The folder is the one :mod:`preprocessing.trial` and ``emofuse batch`` read: a ``manifest.csv``
and the files its rows name, relative to it (``s01/t1.mp4``, ``s01/t1.mat``). The manifest is the
archive's shallowest ``manifest.csv`` (a folder zipped whole puts it one level down); the files
it names are looked up among the archive's members, never on disk. A trial is judged here from
its video and EEG together, so only a row with a video can be; where several have one, ``choice``
(``SUBJECT/TRIAL``, or the trial's name alone when no other subject has it) picks one. Only that
trial's files are unpacked: a folder of a hundred trials costs the disk one trial::

    unpacked = unpack_trial(path, folder, choice=None, limits=ZipLimits(max_bytes=2**31))
    unpacked.trial.video, unpacked.trial.eeg           # folder/member-3, folder/member-4
    unpacked.names[unpacked.trial.eeg]                 # 's01/t1.mat', for messages
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass
from pathlib import Path

from preprocessing.trial import MANIFEST_COLUMNS, Trial, parse_trial_manifest

from .media import UnprocessableUpload
from .unzip import Zip, ZipLimits, open_zip, shown

__all__ = ["MANIFEST", "UnpackedTrial", "unpack_trial"]

MANIFEST = "manifest.csv"
MAX_MANIFEST_BYTES = 2**20  # tens of thousands of rows; a manifest is text
_LISTED = 8  # trials named in a message before "..."


@dataclass(frozen=True)
class UnpackedTrial:
    """The chosen trial, its paths in the caller's folder, and each file's name in the archive."""

    trial: Trial
    names: dict[Path, str]


def unpack_trial(path: Path, folder: Path, *, choice: str | None, limits: ZipLimits) -> UnpackedTrial:
    """Read the trial folder zipped at ``path`` and unpack the chosen trial's files into ``folder``.

    Raises
    ------
    gateway.unzip.DamagedArchive, gateway.unzip.UnsafeArchive, gateway.unzip.ArchiveTooLarge
        The archive itself (cut off, a path out of it, a zip bomb, too large unpacked).
    gateway.media.UnprocessableUpload
        No manifest, or one that cannot be read, names a file the archive lacks, or lists no trial
        with a video, several without ``choice``, or none that ``choice`` names (422).
    """
    with open_zip(path, limits) as archive:
        manifest = _manifest(archive)
        planned = {name: folder / f"member-{index}" for index, name in enumerate(archive.names)}  # generated: no member name reaches a path
        trial = _choose([t for t in _trials(archive, manifest, planned) if t.video is not None], choice)
        names = {planned_path: name for name, planned_path in planned.items()}
        files = list(dict.fromkeys(file for file in (trial.video, trial.eeg, trial.audio) if file is not None))  # a row may name one twice
        for file in files:
            archive.extract(names[file], file)
    return UnpackedTrial(trial, {file: names[file] for file in files})


def _manifest(archive: Zip) -> str:
    found = [name for name in archive.names if posixpath.basename(name).lower() == MANIFEST and not name.startswith("__MACOSX/")]
    if not found:
        raise UnprocessableUpload(f"The .zip holds no {MANIFEST}: zip a trial folder, its manifest ({', '.join(MANIFEST_COLUMNS)}) "
                                  "and the files its rows name.")  # fmt: skip
    depth = min(name.count("/") for name in found)
    top = [name for name in found if name.count("/") == depth]
    if len(top) > 1:
        raise UnprocessableUpload(f"The .zip holds {len(top)} manifests ({', '.join(shown(n) for n in top[:_LISTED])}); "
                                  "send one trial folder.")  # fmt: skip
    return top[0]


def _trials(archive: Zip, manifest: str, planned: dict[str, Path]) -> list[Trial]:
    if archive.size(manifest) > MAX_MANIFEST_BYTES:
        raise UnprocessableUpload(f"The .zip's {shown(manifest)} is larger than {MAX_MANIFEST_BYTES // 2**20} MB; a manifest is a short CSV.")
    try:
        text = archive.read(manifest).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnprocessableUpload(f"The .zip's {shown(manifest)} is not UTF-8 text; save the manifest as a UTF-8 CSV.") from None
    folder = posixpath.dirname(manifest)

    def locate(name: str) -> Path | None:  # relative to the manifest, and inside the archive
        member = posixpath.normpath(posixpath.join(folder, name.replace("\\", "/")))
        return None if name.startswith(("/", "\\")) or member.split("/")[0] == ".." else planned.get(member)

    try:
        return parse_trial_manifest(io.StringIO(text, newline=""), where=f"The .zip's {shown(manifest)}", locate=locate)
    except ValueError as err:  # the message names the line and the column
        raise UnprocessableUpload(str(err)) from err


def _choose(trials: list[Trial], choice: str | None) -> Trial:
    listed = ", ".join(f"{t.subject}/{t.trial}" for t in trials[:_LISTED]) + (", ..." if len(trials) > _LISTED else "")
    choice = (choice or "").strip()
    if not trials:
        raise UnprocessableUpload("No trial in the manifest has a video; a trial is judged here from its video and EEG together "
                                  "(trials of EEG alone: emofuse batch).")  # fmt: skip
    if choice:
        picked = [t for t in trials if choice in (f"{t.subject}/{t.trial}", t.trial)]
        if len(picked) != 1:
            what = "several trials" if picked else "no trial with a video"
            raise UnprocessableUpload(f"The manifest has {what} named {choice[:40]!r}; its trials with a video are {listed}.")
        return picked[0]
    if len(trials) > 1:
        raise UnprocessableUpload(f"The manifest lists {len(trials)} trials with a video ({listed}); name the one to analyse "
                                  "(trial: SUBJECT/TRIAL), or send a .zip of one trial.")  # fmt: skip
    return trials[0]

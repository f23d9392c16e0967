"""A user's analyses as records: found only by their owner, renamed, compared, deleted with every file.

Every lookup names the owner: an id that is someone else's raises the same :class:`NotFound`, with
the same message, as an id that does not exist, so no answer tells the two apart::

    analysis = owned_analysis(session, user.id, 17)        # or NotFound("There is no analysis 17.")
    delete_analysis(session, storage, analysis)            # its rows, its files, and an unused recording
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import ExecutableOption

from . import jobs
from .errors import ApiError, NotFound
from .models import Analysis, AnalysisStatus, Job, Recording
from .storage import Storage
from .uploads import BadUpload, display_name

__all__ = [
    "COMPARED_MODES",
    "comparison",
    "delete_analysis",
    "owned_analysis",
    "owned_recording",
    "rename_analysis",
    "start_comparison",
]

#: The modes a comparison puts side by side, and what each is called there.
COMPARED_MODES = {"face": "face only", "audio": "voice only", "av": "face and voice"}


class NothingToCompare(ApiError):
    """The recording has only a face or only a voice: there is nothing to put side by side."""

    status = 422
    code = "nothing_to_compare"


def owned_analysis(session: Session, user_id: int, analysis_id: int, loads: Sequence[ExecutableOption] = ()) -> Analysis:
    """``loads``: what the caller reads beyond the row, loaded with it (:data:`gateway.results.DOCUMENT_LOADS`)."""
    found = session.scalar(select(Analysis).where(Analysis.id == analysis_id, Analysis.user_id == user_id).options(*loads))
    if found is None:
        raise NotFound(f"There is no analysis {analysis_id}.")
    return found


def owned_recording(session: Session, user_id: int, recording_id: int) -> Recording:
    found = session.scalar(select(Recording).where(Recording.id == recording_id, Recording.user_id == user_id))
    if found is None:
        raise NotFound(f"There is no recording {recording_id}.")
    return found


def rename_analysis(session: Session, analysis: Analysis, name: str | None) -> None:
    """Give ``analysis`` a new name (cleaned as an upload's name is); commits."""
    cleaned = display_name(name or "", fallback="")
    if not cleaned:
        raise BadUpload("Enter a name for the analysis.")
    analysis.name = cleaned
    session.commit()


def delete_analysis(session: Session, storage: Storage, analysis: Analysis) -> None:
    """Delete ``analysis``: its windows, verdicts and jobs (by the database's cascades), its files,
    and its recording with the recording's files when no other analysis uses it.

    The rows go first, so that should a file resist, nothing points at it; a worker running the
    job notices at its next write that the job is gone, and drops its work.
    """
    user_id, recording = analysis.user_id, analysis.recording
    names = list((analysis.files or {}).values())
    others = session.scalar(select(func.count()).select_from(Analysis).where(Analysis.recording_id == recording.id,
                                                                             Analysis.id != analysis.id))  # fmt: skip
    if others == 0:
        names = recording.stored_files
        session.delete(recording)  # its analyses, and theirs, go with it
    else:
        session.delete(analysis)
    session.commit()
    for name in names:
        storage.remove(user_id, name)


def comparison(session: Session, recording: Recording) -> dict[str, Analysis | None]:
    """The newest analysis of ``recording`` in each compared mode (None where there is none)."""
    newest: dict[str, Analysis | None] = dict.fromkeys(COMPARED_MODES)
    for analysis in sorted(recording.analyses, key=lambda a: a.id):
        if analysis.mode in newest:
            newest[analysis.mode] = analysis
    return newest


def comparable_modes(recording: Recording) -> list[str]:
    """The compared modes the recording's streams allow."""
    if recording.kind == "video" and recording.has_audio:
        return list(COMPARED_MODES)
    return []


def start_comparison(session: Session, recording: Recording, base_name: str) -> list[Job]:
    """Queue, for each compared mode the recording allows and lacks, an analysis without an
    annotated copy (the comparison shows verdicts and timelines); commits. The new jobs."""
    modes = comparable_modes(recording)
    if not modes:
        raise NothingToCompare("Only a video with sound can be judged by its face and its voice apart.")
    have = comparison(session, recording)
    created = []
    for mode in modes:
        if have[mode] is not None and have[mode].status != AnalysisStatus.FAILED:
            continue
        analysis = Analysis(user_id=recording.user_id, name=f"{base_name[:200]} · {COMPARED_MODES[mode]}", mode=mode, render=False,
                            status=AnalysisStatus.QUEUED, stage="queued", files={}, failures={})  # fmt: skip
        recording.analyses.append(analysis)
        created.append(jobs.enqueue(session, analysis))
    session.commit()
    return created

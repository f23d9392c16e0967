"""Unpacking an uploaded .zip without trusting it: every member checked from the archive's
directory before a byte is unpacked, then only the members asked for, each to a path of the caller's.

A .zip is told by its first bytes (:func:`is_zip`), never by its name. :func:`open_zip` refuses:

- an archive whose directory cannot be read, as when it was cut off (:class:`DamagedArchive`, 422);
- a member whose name is absolute or climbs out with ``..``, a symlink, an encrypted member, one
  compressed other than stored or deflated, two members of one name (:class:`UnsafeArchive`, 422);
- more than ``max_members`` members, or a member or the whole that unpacks to more than
  ``max_ratio`` times its compressed size, as a zip bomb does (:class:`UnsafeArchive`, 422);
- more than ``max_bytes`` once unpacked (:class:`ArchiveTooLarge`, 413).

:meth:`Zip.extract` then streams one member to disk 64 KiB at a time. zipfile stops each member at
the size the directory declared and checks its CRC, so a member that lies about its size is cut
there and refused as damaged, and nothing unpacks beyond what was checked::

    with open_zip(path, ZipLimits(max_bytes=2**31)) as archive:
        archive.names                                  # the members' names, normalised
        archive.read("trial/manifest.csv")             # small members, in memory
        archive.extract("trial/s01/t1.mp4", folder / "member-3")
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import UploadTooLarge
from .media import UnprocessableUpload

__all__ = ["ArchiveTooLarge", "DamagedArchive", "UnsafeArchive", "Zip", "ZipLimits", "is_zip", "open_zip", "shown"]

CHUNK = 64 * 1024
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what zip tools write; bzip2 and lzma would inflate without a bound per read
_DRIVE = re.compile(r"[A-Za-z]:")


class DamagedArchive(UnprocessableUpload):
    """The .zip cannot be read: cut off, or a member does not unpack."""

    code = "damaged_archive"


class UnsafeArchive(UnprocessableUpload):
    """The .zip holds what no trial folder does: a path out of it, a link, a zip bomb."""

    code = "unsafe_archive"


class ArchiveTooLarge(UploadTooLarge):
    """Unpacked, the .zip would be larger than the upload limit: the 413 of an upload sent too large."""


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may hold. Members under ``ratio_from_bytes`` unpacked are not held to the
    ratio (a small text file compresses well and fills no disk); the archive as a whole still is."""

    max_bytes: int
    max_members: int = 1000
    max_ratio: float = 100.0  # recordings are compressed already; deflate reaches 1,000 to 1 only on repeated bytes
    ratio_from_bytes: int = 2**20


def is_zip(head: bytes) -> bool:
    """Whether the first bytes are a zip's: a member's local header, or an empty archive's end."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def shown(name: str, limit: int = 80) -> str:
    """A member's name as a message may quote it: no control or formatting characters, at most ``limit`` long."""
    text = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


class Zip:
    """An archive whose members were all checked; :func:`open_zip` makes one."""

    def __init__(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> None:
        self._archive, self._members = archive, members

    @property
    def names(self) -> list[str]:
        """The files' names, ``/``-separated, in the archive's order (folders left out)."""
        return list(self._members)

    def size(self, name: str) -> int:
        return self._members[name].file_size

    def read(self, name: str) -> bytes:
        """A member's bytes, in memory: for small ones only (check :meth:`size` first)."""
        with self._unpacking(name):
            return self._archive.read(self._members[name])

    def extract(self, name: str, dest: Path) -> Path:
        """Stream the member ``name`` into the new file ``dest``; a member that fails leaves no file."""
        try:
            with self._unpacking(name), self._archive.open(self._members[name]) as source, dest.open("xb") as target:
                shutil.copyfileobj(source, target, CHUNK)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest

    @contextlib.contextmanager
    def _unpacking(self, name: str) -> Iterator[None]:
        try:
            yield
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:  # a bad CRC, a cut deflate stream, data past the file's end
            raise DamagedArchive(f"The .zip is damaged or cut off: {shown(name)} does not unpack ({err}); send it again.") from err


@contextlib.contextmanager
def open_zip(path: Path, limits: ZipLimits) -> Iterator[Zip]:
    """The archive at ``path``, every member checked against ``limits`` (see the module docstring)."""
    with path.open("rb") as file:
        _check_count(file, limits)
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, ValueError, EOFError) as err:
            raise DamagedArchive(f"The .zip is damaged or cut off: its table of contents cannot be read ({err}); send it again.") from err
        with archive:
            yield Zip(archive, _checked(archive.infolist(), path.stat().st_size, limits))


def _check_count(file: BinaryIO, limits: ZipLimits) -> None:
    """Refuse too many members before zipfile reads its directory, which it holds whole in memory.

    zipfile's own reader of the end record (private, but in every version since 2.x) gives the
    count the archive declares, zip64 included."""
    end = zipfile._EndRecData(file)  # type: ignore[attr-defined]
    if end is None:
        raise DamagedArchive("The .zip is damaged or cut off: its end, which lists its files, is missing; send it again.")
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:  # type: ignore[attr-defined]
        raise UnsafeArchive(f"The .zip holds {end[zipfile._ECD_ENTRIES_TOTAL]:,} files; a trial folder holds at most "  # type: ignore[attr-defined]
                            f"{limits.max_members:,}.")  # fmt: skip


def _checked(infos: list[zipfile.ZipInfo], archive_bytes: int, limits: ZipLimits) -> dict[str, zipfile.ZipInfo]:
    """The file members by normalised name, once each passed :func:`_check_member` and the whole fits."""
    if len(infos) > limits.max_members:  # the end record may understate what the directory holds
        raise UnsafeArchive(f"The .zip holds {len(infos):,} files; a trial folder holds at most {limits.max_members:,}.")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = _check_member(info, limits)
        if name in members:
            raise UnsafeArchive(f"The .zip holds {shown(name)} twice; which one is meant cannot be told.")
        if not info.is_dir():
            members[name] = info
    total = sum(info.file_size for info in members.values())
    if total > limits.max_bytes:
        raise ArchiveTooLarge(f"The .zip unpacks to {_mb(total)}, more than the limit of {_mb(limits.max_bytes)}; nothing was unpacked.")
    if total >= limits.ratio_from_bytes and total > limits.max_ratio * archive_bytes:
        raise UnsafeArchive(_bomb(f"its {len(members):,} files unpack to {_mb(total)}", total, archive_bytes, limits))
    return members


def _check_member(info: zipfile.ZipInfo, limits: ZipLimits) -> str:
    """The member's name, ``/``-separated and normalised, or :class:`UnsafeArchive` saying what is wrong with it."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/") or "\x00" in name:
        raise UnsafeArchive(f"The .zip holds {shown(info.filename)}, a path outside its folder; nothing was unpacked.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchive(f"The .zip holds {shown(info.filename)}, a symbolic link; put the file itself in the .zip.")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"{shown(info.filename)} in the .zip is encrypted; send the .zip without a password.")
    if info.compress_type not in _METHODS:
        raise UnsafeArchive(f"{shown(info.filename)} in the .zip is compressed in a way not read here; zip it with the usual "
                            "compression (deflate) or none.")  # fmt: skip
    if info.file_size >= limits.ratio_from_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise UnsafeArchive(_bomb(f"{shown(info.filename)} unpacks to {_mb(info.file_size)}", info.file_size, info.compress_size, limits))
    return posixpath.normpath(name)


def _bomb(what: str, unpacked: int, packed: int, limits: ZipLimits) -> str:
    return (f"The .zip looks like a zip bomb: {what} from {_mb(packed)}, {unpacked / max(packed, 1):,.0f} to 1, where recordings "
            f"compress {limits.max_ratio:,.0f} to 1 at most; nothing was unpacked.")  # fmt: skip


def _mb(size: int) -> str:
    """``40 KB``, ``3.5 MB``, ``2,048 MB``: a size as the limits are given."""
    if size < 2**20:
        return f"{max(size / 1024, 1):,.0f} KB"
    decimals = 1 if size < 10 * 2**20 and size % 2**20 else 0  # the limit, in whole MB, shows as it was set
    return f"{size / 2**20:,.{decimals}f} MB"

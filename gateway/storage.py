"""Where users' files live: one directory per user, every file name made here.

Nothing a client sends reaches a path: a directory is named by the user's numeric id and a file by
random hex plus a suffix the gateway chose from the content, so path traversal, control characters
or look-alike Unicode in an uploaded file's name have nothing to act on::

    storage = Storage(config.storage_dir)
    name = storage.new_name(".mp4")           # '3f9c...e1.mp4'
    path = storage.path(user.id, name)        # DATA_DIR/users/17/3f9c...e1.mp4
    storage.remove_user(user.id)              # with the account

A name read back from the database goes through :meth:`Storage.path` again, which refuses any
name it could not have made.

The gateway's temporary files and folders sit beside the stored files, under hidden names no
stored file can have (:meth:`Storage.temporaries`): what a process killed outright leaves there
is found by its name alone and swept by the job workers (:meth:`gateway.jobs.Runner.tidy`).
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import StorageError

__all__ = ["Storage"]

_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_NAME = re.compile(r"[0-9a-f]{32}(\.[a-z0-9]{1,8})?")
# what tempfile puts between a prefix and a suffix is made of these
_RANDOM = "[a-z0-9_]+"
# An upload's part (gateway.uploads, gateway.sample) and the link under its EEG suffix while it
# is read; an upload's check folder and its unpacked trial folder (gateway.uploads); a job's work
# folder, named with the job's id (gateway.jobs).
_TEMPORARY = re.compile(rf"\.(?:upload-{_RANDOM}\.part(?:\.[a-z]{{3}})?|check-{_RANDOM}|trial-{_RANDOM}|job-(?P<job>\d+)-{_RANDOM})")


class Storage:
    """Users' directories under ``root`` (``DATA_DIR/users`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def user_dir(self, user_id: int) -> Path:
        """The user's directory, made on first use."""
        if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
            raise StorageError(f"User id {user_id!r} is not a positive integer.")
        directory = self.root / str(user_id)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory

    @staticmethod
    def new_name(suffix: str = "") -> str:
        """A fresh file name: 128 random bits in hex, and ``suffix`` (``.mp4``), chosen by the caller."""
        if suffix and not _SUFFIX.fullmatch(suffix):
            raise StorageError(f"Suffix {suffix!r} is not a dot and 1 to 8 lower-case letters or digits.")
        return secrets.token_hex(16) + suffix

    def path(self, user_id: int, name: str) -> Path:
        """The path of the user's file ``name``, which must be one :meth:`new_name` made."""
        if not _NAME.fullmatch(name):
            raise StorageError(f"Stored name {name!r} was not made by the gateway.")
        return self.user_dir(user_id) / name

    def remove(self, user_id: int, name: str) -> None:
        """Delete one of the user's files; a file already gone is not an error."""
        self.path(user_id, name).unlink(missing_ok=True)

    def temporaries(self) -> Iterator[tuple[Path, int | None]]:
        """Every temporary file and folder in the users' directories, with the id of the job
        whose work folder it is (None for an upload's)."""
        for path in self.root.glob("*/.*"):
            found = _TEMPORARY.fullmatch(path.name)
            if found is not None:
                yield path, int(found["job"]) if found["job"] else None

    def remove_user(self, user_id: int) -> None:
        """Delete the user's directory and everything in it."""
        shutil.rmtree(self.user_dir(user_id))

    def check(self) -> None:
        """Write, read back and delete a file under the root: what serving uploads needs.

        Raises
        ------
        StorageError
            The root cannot be written or read.
        """
        probe = self.root / f".probe-{secrets.token_hex(8)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            try:
                if probe.read_bytes() != b"ok":
                    raise StorageError(f"{self.root} gave back other bytes than were written.")
            finally:
                probe.unlink()
        except OSError as err:
            raise StorageError(f"{self.root} cannot be written: {err.strerror or err}.") from err

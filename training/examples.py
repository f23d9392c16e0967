"""Data sets held as arrays over the same N labelled examples, and what is said of all of them.

Audio-video windows (:class:`training.av.AVWindows`), EEG windows (:class:`training.eeg.EEGWindows`)
and trial logits (:class:`training.fusion.TrialLogits`) are each a dataclass of such arrays with
their class names (channel names, a rate); :class:`Examples` gives them one way to be taken apart,
saved and read back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

__all__ = ["Examples"]

E = TypeVar("E", bound="Examples")


class Examples:
    """Base of a dataclass whose fields are arrays over N examples, a ``labels`` array among them,
    and things said of the whole set.

    A subclass lists its arrays in ``ARRAYS``, each with the dtype it is read back as (None: as
    saved). Its other fields (class names, channel names, a rate) describe every example, so a
    subset keeps them as they are.
    """

    ARRAYS: ClassVar[dict[str, type | None]] = {}
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self: E, idx: np.ndarray) -> E:
        """The examples at ``idx`` (indices or a boolean mask over the N)."""
        return dataclasses.replace(self, **{name: getattr(self, name)[idx] for name in self.ARRAYS})  # type: ignore[type-var]

    def save(self, path: str | Path) -> None:
        """Every field into one compressed ``.npz`` file, which :meth:`load` reads."""
        np.savez_compressed(path, **{f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)})  # type: ignore[arg-type]

    @classmethod
    def load(cls: type[E], path: str | Path) -> E:
        """What :meth:`save` wrote.

        Raises
        ------
        ValueError
            The file lacks some of the fields; the message names them.
        """
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        with np.load(path) as f:
            missing = set(names) - set(f.files)
            if missing:
                raise ValueError(f"{path} lacks the arrays {sorted(missing)}; write it with {cls.__name__}.save.")
            return cls(**{name: cls._read(name, f[name]) for name in names})

    @classmethod
    def _read(cls, name: str, saved: np.ndarray) -> Any:
        if name in cls.ARRAYS:
            dtype = cls.ARRAYS[name]
            return saved if dtype is None else saved.astype(dtype)
        if saved.ndim == 0:
            return saved.item()  # a number said of the whole set: the rate
        return tuple(str(s) for s in saved)  # names: of the classes, of the channels

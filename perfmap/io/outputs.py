"""Atomic, all-or-nothing writing of a run's output files.

A run declares all its outputs first (:class:`OutputSet`), which refuses
existing files without ``overwrite`` before any work is done. Each file is
written to a temporary name in the same folder and only renamed into place by
:meth:`OutputSet.commit`, once every file is written; if anything fails the
temporaries are removed, so a failed run leaves no partial output.

This is perfmap's only atomic writer: runs, batch tables, reports and model
weights all write through :class:`OutputSet` or :func:`write_atomic`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from ..errors import OutputExistsError, ParameterError, PerfmapError


def check_folder(folder, what: str = "output folder") -> Path:
    """Raise unless ``folder`` is a directory or can be created as one.

    Every existing part of the path must be a directory: a regular file where
    a folder is needed (``--out-dir report.html/maps``) would only fail when
    the first output is written, after the work.

    Parameters
    ----------
    folder : path
        The folder outputs will be written to.
    what : str
        How the message names it (e.g. ``"--out-dir"``).

    Returns
    -------
    Path
        ``folder`` as a :class:`~pathlib.Path`.

    Raises
    ------
    ParameterError
        A part of the path is a regular file (or another non-directory).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "f.txt"
    >>> _ = f.write_text("x")
    >>> check_folder(f / "sub")
    Traceback (most recent call last):
    ...
    perfmap.errors.ParameterError: ... is a file, not a folder, so ... cannot be created
    """
    folder = Path(folder)
    absolute = Path(os.path.abspath(folder))
    for part in [absolute, *absolute.parents]:
        if part.exists() or part.is_symlink():
            if part.is_dir():
                return folder
            where = "" if part == absolute else f", so {folder} cannot be created"
            raise ParameterError(f"{what} {folder}: {part} is a file, not a folder{where}")
    return folder


class OutputSet:
    """Transaction over a fixed set of output files inside one folder.

    Parameters
    ----------
    out_dir : path
        Output folder (created on commit if missing).
    names : iterable of str
        Plain file names (no folders) this run will write.
    overwrite : bool
        Replace existing files; otherwise an existing one stops the run.

    Raises
    ------
    ParameterError
        ``out_dir`` cannot be a folder (a part of it is a regular file).
    OutputExistsError
        An output exists and ``overwrite`` is false.
    """

    def __init__(self, out_dir, names, overwrite: bool = False):
        self.out_dir = check_folder(out_dir)
        paths = {}
        for name in names:
            if Path(name).name != name or name in ("", ".", ".."):
                raise PerfmapError(f"output name {name!r} must be a plain file name")
            paths[name] = self.out_dir / name
        self._init(paths, overwrite)

    @classmethod
    def of_paths(cls, paths, overwrite: bool = False) -> "OutputSet":
        """A transaction over files that may lie in different folders (keys: ``str(path)``).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with OutputSet.of_paths([d / "a.txt", d / "sub" / "b.txt"]) as out:
        ...     out.write_text(str(d / "a.txt"), "A")
        ...     out.write_text(str(d / "sub" / "b.txt"), "B")
        ...     _ = out.commit()
        >>> (d / "sub" / "b.txt").read_text()
        'B'
        """
        paths = [Path(p) for p in paths]
        self = cls.__new__(cls)
        self.out_dir = None
        for folder in dict.fromkeys(p.parent for p in paths):
            check_folder(folder)
        self._init({str(p): p for p in paths}, overwrite)
        return self

    def _init(self, paths: dict, overwrite: bool) -> None:
        self._paths = paths
        self._tmp: dict[str, Path] = {}
        folders = [str(p) for p in paths.values() if p.is_dir()]
        if folders:
            raise ParameterError(f"{folders[0]} is a folder; an output file cannot replace it")
        if not overwrite:
            existing = [str(p) for p in self._paths.values() if p.exists()]
            if existing:
                raise OutputExistsError(
                    f"{existing[0]} already exists (use --overwrite to replace it"
                    + (f"; {len(existing) - 1} more outputs exist too)" if len(existing) > 1
                       else ")"))

    @property
    def names(self) -> list[str]:
        """The declared output file names, in declaration order."""
        return list(self._paths)

    def path(self, name: str) -> Path:
        return self._paths[name]

    def write(self, name: str, writer: Callable[[Path], None]) -> None:
        """Call ``writer(tmp_path)`` to write ``name`` under a temporary name."""
        final = self._paths[name]
        final.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real suffix last so suffix-driven writers (nibabel) pick the format.
        suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
        self._tmp[name] = tmp
        writer(tmp)

    def write_text(self, name: str, text: str) -> None:
        self.write(name, lambda p: p.write_text(text, encoding="utf-8"))

    def commit(self) -> list[Path]:
        """Rename every written temporary into place; returns the final paths."""
        missing = [n for n in self._paths if n not in self._tmp]
        if missing:
            raise PerfmapError(f"internal error: outputs not written: {', '.join(missing)}")
        created = []
        try:
            for name, tmp in self._tmp.items():
                final = self._paths[name]
                existed = final.exists()
                os.replace(tmp, final)
                if not existed:
                    created.append(final)
        except OSError:
            # Undo what this commit added (files it replaced cannot be restored).
            for path in created:
                path.unlink(missing_ok=True)
            raise
        self._tmp.clear()
        return list(self._paths.values())

    def abort(self) -> None:
        """Remove every temporary written so far."""
        for tmp in self._tmp.values():
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        self._tmp.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def write_atomic(path, writer: Callable[[Path], None]) -> Path:
    """Write one file through a temporary name and rename it into place (replacing it).

    Parameters
    ----------
    path : path
        The file to write; its folder is created if missing.
    writer : callable
        ``writer(tmp_path)`` writes the content.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = write_atomic(p, lambda tmp: tmp.write_text("ok"))
    >>> p.read_text()
    'ok'
    """
    with OutputSet.of_paths([path], overwrite=True) as out:
        out.write(str(path), writer)
        return out.commit()[0]


def write_text_atomic(path, text: str) -> Path:
    """:func:`write_atomic` for UTF-8 text."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))

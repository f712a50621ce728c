"""Output folders that never clobber a user's files and are never left half-written.

Every command that writes an ``--out`` folder goes through :func:`output_dir`::

    with output_dir("runs/x", kind="capture") as tmp:
        ...write files into tmp...
    # runs/x now holds exactly those files (plus the marker), or, if the block raised,
    # runs/x is exactly what it was before

Rules, in order:

* a folder that does not exist, or is empty, is fine;
* a folder holding a probe output (it has the marker file :data:`MARKER`, written last
  by every successful run) is replaced when the same command wrote it; another command's
  files there are kept (only same-named files are replaced);
* any other non-empty folder, or a file in the way, is refused with :class:`OutputError`,
  unless ``overwrite=True``; even then only files with the names probe writes are
  replaced, the user's other files stay;
* everything is written to a temporary sibling folder first and moved into place at
  the end (a rename), so an interrupted or failed run leaves no partial output and
  the previous output untouched; files an earlier probe run wrote but this run does
  not (a stale ``plotly.min.js``) are removed, never reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import OutputError

__all__ = ["output_dir", "check_output_dir", "is_probe_output", "MARKER"]

#: Name of the marker file a finished probe output holds (JSON: kind, time, files written).
MARKER = ".probe-output.json"


def _read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


def is_probe_output(path) -> bool:
    """Whether ``path`` is a folder a finished probe command wrote (it holds a valid marker)."""
    path = Path(path)
    return path.is_dir() and _read_marker(path) is not None


def _files_under(folder: Path) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(folder):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), folder))
    return sorted(out)


def check_output_dir(path, *, overwrite: bool = False) -> Path:
    """Raise :class:`OutputError` if probe may not write to ``path``; return the resolved path.

    Parameters
    ----------
    path : str or Path
        The folder a command would write.
    overwrite : bool
        Allow writing into a non-empty folder that is not a probe output (only files
        probe writes get replaced).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_dir(d / "new") == (d / "new").resolve()
    True
    >>> (d / "notes.txt").write_text("mine")
    4
    >>> check_output_dir(d)
    Traceback (most recent call last):
    ...
    probe.errors.OutputError: ... is not empty and is not a probe output (it holds notes.txt); choose a new folder or pass --overwrite
    """
    raw = str(path)
    if raw in ("", "-"):
        raise OutputError(f"output folder must be a path, given {raw!r}")
    try:
        target = Path(path).resolve(strict=False)
    except (RuntimeError, OSError) as exc:  # a symlink loop on some Python versions
        raise OutputError(f"cannot resolve output folder {raw}: {exc}") from None
    if os.path.lexists(raw) and not os.path.exists(raw):
        raise OutputError(f"output folder {raw} is a symbolic link to a missing target or a loop")
    if target.exists() and not target.is_dir():
        raise OutputError(f"output path {raw} is a file, not a folder; choose a folder name")
    if target.is_dir() and not overwrite and _read_marker(target) is None:
        try:
            entries = sorted(p.name for p in target.iterdir())
        except OSError as exc:
            raise OutputError(f"cannot list output folder {raw}: {exc.strerror or exc}") from None
        if entries:
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            raise OutputError(f"output folder {raw} is not empty and is not a probe output (it holds {shown}); "
                              "choose a new folder or pass --overwrite")
    return target


@contextmanager
def output_dir(path, *, kind: str = "output", overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success move its files to ``path``, on failure discard it.

    Parameters
    ----------
    path : str or Path
        Final output folder (see the module docstring for what is refused).
    kind : str
        Recorded in the marker (``"capture"``, ``"report"``…).
    overwrite : bool
        Allow a non-empty folder that is not a probe output; only same-named files are replaced.

    Yields
    ------
    Path
        An empty temporary folder next to ``path`` (same file system, so the final move is a rename).

    Raises
    ------
    OutputError
        The folder is refused (checked before the block runs).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with output_dir(d / "out", kind="demo") as tmp:
    ...     _ = (tmp / "result.txt").write_text("42")
    >>> sorted(p.name for p in (d / "out").iterdir())
    ['.probe-output.json', 'result.txt']
    """
    target = check_output_dir(path, overwrite=overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-tmp-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's private 0700 would outlive the rename
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        _finish(tmp, target, kind=kind, overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _finish(tmp: Path, target: Path, *, kind: str, overwrite: bool) -> None:
    files = _files_under(tmp)
    files = [f for f in files if f != MARKER]
    marker = {"probe_output": kind, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "files": files}
    (tmp / MARKER).write_text(json.dumps(marker, indent=1))
    # re-check: the folder may have changed while the run was computing
    check_output_dir(target, overwrite=overwrite)
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        if target.exists():
            target.rmdir()
        os.rename(tmp, target)
        return
    old = _read_marker(target)
    if old is not None and old.get("probe_output") != kind:
        old = None  # another command's output: its files are kept like a user's, never removed
    present = set(_files_under(target))
    if old is not None and present <= set(old["files"]) | {MARKER}:
        # only probe's own files: swap whole folders, then drop the old one
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-old-", dir=target.parent))
        aside.rmdir()
        os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    # a folder that also holds the user's files: replace probe's files one by one, leave the rest
    for f in files:
        dst = target / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir() and not dst.is_symlink():
            raise OutputError(f"cannot write {dst}: a folder of that name is in the way")
        os.replace(tmp / f, dst)
    for f in (old or {}).get("files", []):
        stale = target / str(f)
        safe = not Path(str(f)).is_absolute() and ".." not in Path(str(f)).parts
        if f not in files and safe and (stale.is_file() or stale.is_symlink()):
            stale.unlink()  # written by an earlier probe run, not by this one: never keep it
    os.replace(tmp / MARKER, target / MARKER)

"""Output paths and weight-file names, checked before any work starts: a run that takes minutes must not fail
at its last step because `-o` names a missing directory. Each check raises a one-line UsageError (exit 2) that
names the flag, the path and why."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

WEIGHT_SUFFIXES = (".safetensors", ".npz")   # what pnet.weights reads and writes


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists (what a mkdir -p would create under)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _writable_dir(flag: str, shown: Path, d: Path) -> None:
    if not d.is_dir():
        raise UsageError(f"{flag} {shown}: {d} is not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {shown}: permission denied (cannot write in {d})")


def check_output_file(flag: str, path, suffixes: tuple[str, ...] | None = None, what: str = "file") -> Path:
    """A file about to be written: its directory exists and is writable, the path is not a directory, and
    (with `suffixes`) its extension is one of them -- never a silently added one."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if suffixes is not None and path.suffix not in suffixes:
        got = f"'{path.suffix}'" if path.suffix else "no extension"
        raise UsageError(f"{flag} {path}: unknown {what} extension ({got}); use {' or '.join(suffixes)}")
    parent = path.absolute().parent
    if not parent.exists():
        raise UsageError(f"{flag} {path}: directory does not exist ({parent})")
    _writable_dir(flag, path, parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: permission denied")
    return path


def check_output_dir(flag: str, path) -> Path:
    """A directory about to be filled (made with its parents if missing): not a file, and the nearest existing
    ancestor is a writable directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a directory")
    _writable_dir(flag, path, _nearest_existing(path))
    return path


def check_weight_file(flag: str, path) -> Path:
    """A weight file to read: its extension says its format (.safetensors or .npz)."""
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        got = f"'{path.suffix}'" if path.suffix else "no extension"
        raise UsageError(f"{flag} {path}: unknown weight-file extension ({got}); use {' or '.join(WEIGHT_SUFFIXES)}")
    return path

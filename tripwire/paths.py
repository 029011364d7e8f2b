"""Input and output paths checked before any work: an output is never an input, and can be written.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> (folder / "events.jsonl").write_text("")
0
>>> check_output("--out", folder / "alerts.jsonl", [("the events", folder / "events.jsonl")])
>>> try:
...     check_output("--out", folder / "." / "events.jsonl", [("the events", folder / "events.jsonl")])
... except PathError as error:
...     print(error)
--out ... is the same file as the events ...: refusing to overwrite it (nothing was written)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


class PathError(ValueError):
    """An input or output path that cannot be used; found before any record is read or written."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, through symbolic and hard links."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet: then only the same path names the same file
        return a.resolve() == b.resolve()


def check_output(role: str, path: Path, others: Iterable[tuple[str, Path]]) -> None:
    """``path`` (``role`` in messages, e.g. "--out") is none of ``others``, not a folder, and its folder is writable."""
    for other_role, other in others:
        if same_file(path, other):
            raise PathError(f"{role} {path} is the same file as {other_role} {other}: "
                            "refusing to overwrite it (nothing was written)")
    if path.is_dir():
        raise PathError(f"{role} {path} is a directory; give a file name")
    folder = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not os.access(folder, os.W_OK):
        raise PathError(f"{role} {path}: cannot write in {folder} (read-only)")

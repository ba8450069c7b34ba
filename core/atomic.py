"""Write to a temporary name, then rename: a crash never leaves a half artifact that looks whole."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

# mkstemp/mkdtemp create private (0600/0700) entries; published artifacts get the usual modes.
FILE_MODE = 0o644
DIR_MODE = 0o755


def beside(output: Path, suffix: str) -> Path:
    """A path next to `output`, named after it: `<output><suffix>` (its stats, its work folder,
    its quarantine, its report), outside it so that the output's own hash holds the data alone."""
    output = Path(output)
    return output.with_name(output.name + suffix)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(built: Path, target: Path) -> None:
    """Publish the finished folder `built` (a sibling of `target`) as `target` in one rename,
    replacing an older `target`, so a reader never sees half of it."""
    os.chmod(built, DIR_MODE)
    if Path(target).exists():
        shutil.rmtree(target)
    os.replace(built, target)


@contextmanager
def atomic_dir(path: Path):
    """Yield a temporary sibling directory; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)

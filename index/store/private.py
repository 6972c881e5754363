"""Files and directories of the local cache, readable by their owner only.

The cache holds what a repository keeps secret: decrypted snapshot indexes,
file names being staged, copies of packs. Every directory of it is 0700 and
every file 0600, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from index.store.storage import replacing

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, own: bool = True) -> Path:
    """Make `path` a directory only its owner can enter and return it.
    Missing directories on the way are created 0700. An existing `path` is
    set to 0700 too, unless `own` is False: a directory the user named (such
    as $HISTFS_CACHE_DIR) may be shared, and what histfs puts in it is
    private anyway."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, DIR_MODE)
        # The umask may have taken bits away; it never adds any.
        os.chmod(d, DIR_MODE)
    if own and not missing and stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """A descriptor of the file `path`, created with mode 0600 (also set on
    a file that existed)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace the small file `path` by `data`, mode 0600: written under a
    temporary name and renamed, so that readers see the old or the new
    content."""
    with replacing(path, FILE_MODE) as tmp:
        fd = open_private(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

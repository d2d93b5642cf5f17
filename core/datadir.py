"""The data dir (``ORCH_DATA_DIR``): owner-only from the moment it is created.

It holds the SQLite database, the admin key, the S3 store with its credentials, the servers' logs and (for
the ``local`` driver) the runs: nobody but its owner has anything to read there.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def make_data_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing one loses read and write for group
    and others (0755 becomes 0711: a root worker's ``local`` driver keeps others' traverse bit so that its
    apps, each under its own uid, reach their directories under ``runs/``; it lists nothing). Returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # another user's dir: left as it is
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o066:
            os.chmod(path, mode & ~0o066)
    return path

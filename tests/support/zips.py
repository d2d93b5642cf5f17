"""Build app zips for tests."""

from __future__ import annotations

import io
import zipfile

MAIN_PY = """\
import json, os, sys
print("ARGS", json.dumps(sys.argv[1:]))
print("ENV", json.dumps({k: v for k, v in os.environ.items() if k.startswith("ORCH_")}))
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""


def make_zip(files: dict[str, str | bytes] | None = None) -> bytes:
    files = files if files is not None else {"main.py": MAIN_PY}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            # a fixed timestamp: the same files always make the same bytes (artifacts are content-addressed)
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), content, zipfile.ZIP_DEFLATED)
    return buf.getvalue()

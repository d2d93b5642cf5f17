"""The app contract every driver honours, in one place.

The zip's ``run.sh`` (run with ``sh``) or ``main.py`` (run with Python) gets the merged args as
``--key=value`` arguments and the environment ``ORCH_RUN_ID``, ``ORCH_DATA_URI`` and ``ORCH_ARGS`` (the args
as a JSON object). Exit code 0 means success.
"""

from __future__ import annotations

import json
import re
from typing import Any

from models.api import args_launch_problem

_ARG_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def arg_value(value: Any) -> str:
    """A string arg as is; anything else as JSON (``True`` -> ``true``, ``[1, 2]`` -> ``[1, 2]``)."""
    return value if isinstance(value, str) else json.dumps(value)


def app_argv(args: dict[str, Any]) -> list[str]:
    """``{"a": 1, "b": "x y"}`` -> ``["--a=1", "--b=x y"]`` (keys sorted, so the command is stable)."""
    out = []
    for key in sorted(args):
        if not _ARG_KEY.match(key):
            raise ValueError(f"arg name {key!r} must match {_ARG_KEY.pattern}")
        out.append(f"--{key}={arg_value(args[key])}")
    return out


def app_env(run_id: str, data_uri: str | None, args: dict[str, Any]) -> dict[str, str]:
    """The ``ORCH_*`` variables the app sees."""
    return {
        "ORCH_RUN_ID": run_id,
        "ORCH_DATA_URI": data_uri or "",
        "ORCH_ARGS": json.dumps(args, sort_keys=True),
    }


def safe_path_part(value: str, what: str) -> str:
    """Reject ids that could not safely be a directory name or a tag value (``/``, ``..``, spaces)."""
    if not _PATH_PART.match(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r} must match {_PATH_PART.pattern}")
    return value


def args_problem(args: dict[str, Any]) -> str | None:
    """Why these args can never be given to an app (the API refuses them at submit; rows stored before it
    did fail their launch with this reason): text that is not valid Unicode (a lone surrogate), or more
    bytes than the OS passes to a program (``models.api.args_launch_problem``)."""
    for key, value in args.items():
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return f"arg {key.encode('utf-8', 'backslashreplace').decode()!r} is not valid Unicode"
    return args_launch_problem(args)

"""Validation of the client's AWS settings (pure; no AWS calls): the one home of the ARN, region, session
name and external ID rules and their messages (the API checks input with them, ``core.aws`` re-checks before
calling AWS). Known region names come from botocore's bundled endpoint data."""

from __future__ import annotations

import functools
import re
import string

ROLE_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role/([\w+=,.@/-]{1,512})$")
INSTANCE_PROFILE_RE = re.compile(
    r"^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:instance-profile/[\w+=,.@/-]{1,512}$"
)
REGION_RE = re.compile(r"^(?P<area>[a-z]{2})(-(?P<sub>gov|iso|isob|isof|isoe))?-[a-z]+-\d{1,2}$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
ROLE_ARN_MESSAGE = "role_arn must look like arn:aws:iam::<12-digit account>:role/<name>"
SESSION_NAME_MESSAGE = "the session name must be 2-64 characters of letters, digits and +=,.@_-"
EXTERNAL_ID_MESSAGE = "the external ID must be 2-1224 characters of letters, digits and +=,.@:/_-"
PLACEHOLDERS = {"client_id", "run_id", "job_id"}
# Longest ids we generate ("run_" + 20 hex): rendering with these proves every real name fits.
SAMPLE_IDS = {"run_id": "run_" + "f" * 20, "job_id": "job_" + "f" * 20}


def check_role_arn(arn: str) -> str:
    """Returns the partition; raises ValueError with a reason."""
    m = ROLE_ARN_RE.match(arn)
    if not m:
        raise ValueError(ROLE_ARN_MESSAGE)
    path = m.group(3)
    if path.startswith("/") or "//" in path:
        raise ValueError("role_arn has an empty path segment")
    return m.group(1)


def check_region(region: str, partition: str | None = None) -> None:
    m = REGION_RE.match(region)
    if not m:
        raise ValueError(f"{region!r} is not an AWS region name (e.g. us-east-1, eu-west-2)")
    if partition == "aws-cn" and m.group("area") != "cn":
        raise ValueError(f"region {region} is not in the aws-cn partition of role_arn")
    if partition == "aws-us-gov" and m.group("sub") != "gov":
        raise ValueError(f"region {region} is not in the aws-us-gov partition of role_arn")
    if partition == "aws" and (m.group("area") == "cn" or m.group("sub")):
        raise ValueError(f"region {region} is not in the aws partition of role_arn")


@functools.cache
def known_regions(partition: str) -> frozenset[str]:
    """The EC2 regions of ``partition`` that the installed botocore knows (its bundled endpoint data: no
    AWS call). Empty for partitions botocore lists no EC2 region for."""
    import boto3.session

    try:
        return frozenset(boto3.session.Session().get_available_regions("ec2", partition_name=partition))
    except Exception:  # noqa: BLE001 - an unknown partition name: nothing to check against
        return frozenset()


def partition_of(region: str) -> str:
    """The partition a well-formed region name belongs to (``cn-*``: aws-cn, ``*-gov-*``: aws-us-gov)."""
    m = REGION_RE.match(region)
    if m and m.group("area") == "cn":
        return "aws-cn"
    if m and m.group("sub") == "gov":
        return "aws-us-gov"
    return "aws"


def check_known_region(region: str, partition: str | None = None) -> None:
    """:func:`check_region`, and the region must be one botocore lists for EC2 in its partition (so a typo
    such as ``eu-wset-3`` or ``eu-west-33`` is refused). Raises ValueError with a reason."""
    check_region(region, partition)
    part = partition or partition_of(region)
    known = known_regions(part)
    if known and region not in known:
        raise ValueError(f"{region!r} is not a known AWS region of the {part} partition")


def render_session_name(
    template: str, client_id: str, run_id: str | None = None, job_id: str | None = None
) -> str:
    values = {
        "client_id": client_id,
        "run_id": run_id or SAMPLE_IDS["run_id"],
        "job_id": job_id or SAMPLE_IDS["job_id"],
    }
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"session_name_template is not a valid template: {exc}") from exc
    unknown = fields - PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"session_name_template uses unknown placeholder(s) {sorted(unknown)}; "
            f"allowed: {sorted(PLACEHOLDERS)}"
        )
    return template.format(**values)


def check_session_name_template(template: str, client_id: str) -> str:
    rendered = render_session_name(template, client_id)
    if not SESSION_NAME_RE.match(rendered):
        raise ValueError(
            f"session_name_template renders to {rendered!r}; AWS needs 2-64 characters "
            "of letters, digits and +=,.@_-"
        )
    return rendered

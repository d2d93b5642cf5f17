"""Acting in a client's AWS account: STS AssumeRole with the client's role ARN and external ID.

The orchestrator's own identity comes from the default boto3 chain (environment, profile, instance role).
Assumed credentials live only in this process's memory, cached per (role, external ID, session name,
region, endpoint) until ``aws_credential_refresh_margin_sec`` seconds before they expire. They are never
written anywhere, and neither they nor the external ID are ever logged (the cache's values hide themselves
in ``repr``). ``settings.aws_endpoint_url`` points STS, EC2 and SSM at moto in tests.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from core.aws_validation import (
    EXTERNAL_ID_MESSAGE,
    EXTERNAL_ID_RE,
    ROLE_ARN_MESSAGE,
    ROLE_ARN_RE,
    SESSION_NAME_MESSAGE,
    SESSION_NAME_RE,
)
from core.settings import Settings
from models.fleet import AwsAccess

log = logging.getLogger(__name__)


_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
# verify answers a person waiting on an HTTP request: fail fast
_VERIFY_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=15)


@dataclass(frozen=True)
class AssumedCredentials:
    """Temporary credentials of the client's role. ``repr`` hides the secrets."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime  # UTC
    assumed_role_arn: str = ""

    def boto_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


_cache: dict[tuple[str, ...], AssumedCredentials] = {}
_lock = threading.Lock()


def clear_credential_cache() -> None:
    """Forget every cached assumed-role credential (tests; key rotation)."""
    with _lock:
        _cache.clear()
        _clients.clear()


def check_access(access: AwsAccess) -> None:
    """Raise ValueError when the role ARN, session name or external ID cannot be valid for AWS."""
    if not ROLE_ARN_RE.match(access.role_arn or ""):
        raise ValueError(ROLE_ARN_MESSAGE)
    if not SESSION_NAME_RE.match(access.session_name or ""):
        raise ValueError(SESSION_NAME_MESSAGE)
    if access.external_id and not EXTERNAL_ID_RE.match(access.external_id):
        raise ValueError(EXTERNAL_ID_MESSAGE)
    if not access.region:
        raise ValueError("no AWS region given")


def _base_client(service: str, region: str, settings: Settings, config: Config = _CONFIG):
    """A client with the orchestrator's own identity (default credential chain)."""
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=settings.aws_endpoint_url, config=config
    )


def assume_role(
    access: AwsAccess, settings: Settings, *, use_cache: bool = True, _config: Config = _CONFIG
) -> AssumedCredentials:
    """Temporary credentials for the client's role (STS AssumeRole in ``access.region``).

    Cached until ``aws_credential_refresh_margin_sec`` (default 300 s) before expiry; sessions last
    ``aws_session_duration_sec`` (default 3600 s, the role's maximum may be higher). Raises ValueError
    for malformed input and botocore errors for what AWS refused.
    """
    check_access(access)
    endpoint = settings.aws_endpoint_url or ""
    key = (access.role_arn, access.external_id or "", access.session_name, access.region, endpoint)
    margin = timedelta(seconds=settings.aws_credential_refresh_margin_sec)
    now = datetime.now(UTC)
    if use_cache:
        with _lock:
            hit = _cache.get(key)
        if hit and hit.expiration - margin > now:
            return hit
    params: dict[str, Any] = {
        "RoleArn": access.role_arn,
        "RoleSessionName": access.session_name,
        "DurationSeconds": settings.aws_session_duration_sec,
    }
    if access.external_id:
        params["ExternalId"] = access.external_id
    resp = _base_client("sts", access.region, settings, _config).assume_role(**params)
    c = resp["Credentials"]
    exp = c["Expiration"]
    exp = exp.astimezone(UTC) if exp.tzinfo else exp.replace(tzinfo=UTC)
    creds = AssumedCredentials(
        c["AccessKeyId"],
        c["SecretAccessKey"],
        c["SessionToken"],
        exp,
        resp.get("AssumedRoleUser", {}).get("Arn", ""),
    )
    log.info(
        "assumed role %s as session %s in %s (expires %s)",
        access.role_arn,
        access.session_name,
        access.region,
        exp.isoformat(),
    )
    with _lock:
        _cache[key] = creds
    return creds


_clients: OrderedDict[tuple[str, ...], Any] = OrderedDict()
_CLIENT_CACHE_SIZE = 64


def client(service: str, access: AwsAccess, settings: Settings, *, region: str | None = None):
    """A boto3 client acting as the client's role (``ec2``, ``ssm``...), in ``region`` or the access's.

    Clients are thread-safe and costly to build (~0.1 s), so they are reused for as long as the
    credentials they were built with are the current ones."""
    creds = assume_role(access, settings)
    endpoint = settings.aws_endpoint_url
    region = region or access.region
    key = (service, region, endpoint or "", creds.access_key_id, creds.session_token)
    with _lock:
        hit = _clients.get(key)
        if hit is not None:
            _clients.move_to_end(key)
            return hit
    made = boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint, config=_CONFIG, **creds.boto_kwargs()
    )
    with _lock:
        _clients[key] = made
        while len(_clients) > _CLIENT_CACHE_SIZE:
            _clients.popitem(last=False)
    return made


# --- verify -----------------------------------------------------------------------------------------------
_PERMISSION_HINT = (
    "The role was assumed but lacks {action}. Attach the permission policy from docs/aws.md "
    "(section 'Permission policy') to the role."
)

_HINTS = {
    "AccessDenied": (
        "AWS refused sts:AssumeRole. Check (1) the role ARN is right (AWS answers AccessDenied for a role "
        "that does not exist), (2) the role's trust policy lets the orchestrator's principal{principal} "
        "call sts:AssumeRole, (3) its sts:ExternalId condition equals this client's external ID exactly. "
        "docs/aws.md has the trust policy to copy."
    ),
    "ValidationError": (
        "The request was malformed: role ARN must look like arn:aws:iam::123456789012:role/name, the session "
        "name must be 2-64 characters of letters, digits and +=,.@_-, and the requested session duration "
        "must not exceed the role's maximum session duration."
    ),
    "RegionDisabledException": (
        "STS is not activated in this region for the client's account: activate it in IAM > Account "
        "settings, or use another region."
    ),
    "InvalidClientTokenId": (
        "The orchestrator's own AWS credentials are not valid (an operator problem, not the client's role)."
    ),
    "SignatureDoesNotMatch": (
        "The orchestrator's own AWS secret key is wrong (an operator problem, not the client's role)."
    ),
    "ExpiredToken": "The orchestrator's own AWS credentials have expired (an operator problem).",
    "UnrecognizedClientException": "The orchestrator's own AWS credentials are not recognised (an operator "
    "problem, not the client's role).",
    "NoCredentials": (
        "The orchestrator has no AWS credentials of its own (environment, profile or instance role), so it "
        "cannot call STS. An operator must configure them."
    ),
    "EndpointConnectionError": (
        "Could not reach the AWS STS endpoint for this region: check the region name, the network, and "
        "ORCH_AWS_ENDPOINT_URL if set."
    ),
}


def hint_for(error_code: str, stage: str = "assume_role", principal: str | None = None) -> str:
    """A person-readable next step for an AWS error code met at ``stage`` ("assume_role" or "permissions")."""
    denied = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")
    if stage == "permissions" and error_code in denied:
        return _PERMISSION_HINT.format(action="a permission the orchestrator needs")
    hint = _HINTS.get(error_code)
    if hint:
        return hint.format(principal=f" ({principal})" if principal else "")
    return (
        "See AWS's message above; docs/aws.md lists the trust policy and the permission policy the role "
        "needs."
    )


def _error_code(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return err.get("Code", "ClientError"), err.get("Message", str(exc))
    if isinstance(exc, NoCredentialsError):
        return "NoCredentials", str(exc)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return "EndpointConnectionError", str(exc)
    return type(exc).__name__, str(exc)


def _own_principal(region: str, settings: Settings) -> str | None:
    try:
        return _base_client("sts", region, settings, _VERIFY_CONFIG).get_caller_identity()["Arn"]
    except (BotoCoreError, ClientError):
        return None


# DryRun probes of what the drivers need most; "DryRunOperation" is AWS's "you would be allowed".
_PROBES = (
    ("ec2", "describe_instances", "ec2:DescribeInstances"),
    ("ec2", "describe_launch_templates", "ec2:DescribeLaunchTemplates"),
)


def verify_role(access: AwsAccess, settings: Settings) -> dict[str, Any]:
    """Try AssumeRole now (bypassing the cache) and a few permission probes; report what AWS said.

    Returns ``{"ok": True, "account", "arn"}`` or ``{"ok": False, "error_code", "message", "hint"}``.
    Never raises for AWS or network errors; never includes credentials.
    """
    try:
        check_access(access)
    except ValueError as exc:
        return {
            "ok": False,
            "error_code": "ValidationError",
            "message": str(exc),
            "hint": hint_for("ValidationError"),
        }
    try:
        creds = assume_role(access, settings, use_cache=False, _config=_VERIFY_CONFIG)
    except (BotoCoreError, ClientError) as exc:
        code, message = _error_code(exc)
        principal = _own_principal(access.region, settings) if code == "AccessDenied" else None
        log.info("verify role %s: AssumeRole failed with %s", access.role_arn, code)
        return {
            "ok": False,
            "error_code": code,
            "message": message,
            "hint": hint_for(code, principal=principal),
        }
    endpoint = settings.aws_endpoint_url
    session = boto3.session.Session(**creds.boto_kwargs())
    try:
        ident = session.client(
            "sts", region_name=access.region, endpoint_url=endpoint, config=_VERIFY_CONFIG
        ).get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        code, message = _error_code(exc)
        return {"ok": False, "error_code": code, "message": message, "hint": hint_for(code)}
    for service, op, action in _PROBES:
        try:
            probe = session.client(
                service, region_name=access.region, endpoint_url=endpoint, config=_VERIFY_CONFIG
            )
            getattr(probe, op)(DryRun=True)
        except ClientError as exc:
            code, message = _error_code(exc)
            if code == "DryRunOperation":
                continue
            return {
                "ok": False,
                "error_code": code,
                "message": message,
                "hint": _PERMISSION_HINT.format(action=action)
                if code in ("UnauthorizedOperation", "AccessDenied")
                else hint_for(code),
            }
        except BotoCoreError as exc:
            code, message = _error_code(exc)
            return {"ok": False, "error_code": code, "message": message, "hint": hint_for(code)}
    return {"ok": True, "account": ident["Account"], "arn": ident["Arn"]}


def instance_type_offerings(
    access: AwsAccess, settings: Settings, regions: list[str], instance_types: list[str]
) -> list[dict[str, Any]]:
    """For each region, which of ``instance_types`` the client's account is NOT offered there
    (``ec2:DescribeInstanceTypeOfferings`` with LocationType ``region``, as the client's role).

    One ``{"region", "ok", "not_offered", "error_code", "message", "hint"}`` per region, in order. Never
    raises for AWS or network errors (they are reported per region); never includes credentials."""
    types = sorted(set(instance_types))
    out: list[dict[str, Any]] = []
    try:
        creds = assume_role(access, settings, _config=_VERIFY_CONFIG)
    except (BotoCoreError, ClientError, ValueError) as exc:
        code, message = _error_code(exc)
        return [
            {
                "region": r,
                "ok": False,
                "not_offered": [],
                "error_code": code,
                "message": message,
                "hint": hint_for(code),
            }
            for r in regions
        ]
    session = boto3.session.Session(**creds.boto_kwargs())
    for region in regions:
        entry: dict[str, Any] = {
            "region": region,
            "ok": True,
            "not_offered": [],
            "error_code": None,
            "message": None,
            "hint": None,
        }
        try:
            ec2 = session.client(
                "ec2", region_name=region, endpoint_url=settings.aws_endpoint_url, config=_VERIFY_CONFIG
            )
            offered: set[str] = set()
            for i in range(0, len(types), 100):  # at most 200 values per filter
                pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
                    LocationType="region", Filters=[{"Name": "instance-type", "Values": types[i : i + 100]}]
                )
                for page in pages:
                    offered |= {o["InstanceType"] for o in page.get("InstanceTypeOfferings", [])}
            entry["not_offered"] = [t for t in types if t not in offered]
            entry["ok"] = not entry["not_offered"]
        except (BotoCoreError, ClientError) as exc:
            code, message = _error_code(exc)
            if code in ("UnauthorizedOperation", "AccessDenied"):
                hint = _PERMISSION_HINT.format(action="ec2:DescribeInstanceTypeOfferings")
            elif code in ("AuthFailure", "OptInRequired", "UnrecognizedClientException"):
                hint = f"Is {region} enabled in the client's account? Opt-in regions must be enabled first."
            else:
                hint = hint_for(code)
            entry.update(ok=False, error_code=code, message=message, hint=hint)
        out.append(entry)
    return out

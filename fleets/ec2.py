"""The ``ec2`` fleet driver: one EC2 Fleet (type ``instant``) per attempt in the client's AWS account.

Per attempt: a launch template ``orch-<run_id>-<attempt>`` (AMI, instance type, user-data, optional
subnet / security groups / instance profile, ``InstanceInitiatedShutdownBehavior=terminate``, IMDSv2,
tags ``orch:run-id``, ``orch:attempt``, ``orch:client-id`` on the template, its instances and volumes) and
an instant EC2 Fleet of one On-Demand or Spot instance (``LaunchSpec.capacity``), tagged the same.

The instance runs ``fleets/userdata.sh``: it fetches the artifact by presigned GET, checks its sha256, runs
the app, and uploads its log and then ``result.json`` to presigned PUT URLs under
``s3://<settings.s3_bucket>/runs/<client_id>/<run_id>/<attempt>/``, then powers off (and so terminates).
Presigned URLs live ``ec2_presign_ttl_sec`` seconds (default and SigV4 maximum: 7 days), which bounds how
long an attempt can run and still report; with temporary S3 credentials they die with those credentials.

Idempotency never relies on ClientToken alone (moto ignores it): before creating anything, ``launch`` looks
for instances and fleets tagged with the run and attempt, and the launch template's name is unique per
account and region. A deterministic ClientToken is still passed for real AWS, whose describe calls can lag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core import aws
from core.s3 import s3_client
from core.settings import Settings
from fleets.base import AwsAccess, FleetHandle, FleetState, FleetStatus, LaunchSpec
from fleets.contract import app_argv, app_env, safe_path_part
from models.domain import Capacity

log = logging.getLogger(__name__)

TAG_RUN, TAG_ATTEMPT, TAG_CLIENT = "orch:run-id", "orch:attempt", "orch:client-id"
AL2023_SSM = {
    "x86_64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "arm64": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
}
USERDATA_TEMPLATE = Path(__file__).with_name("userdata.sh")
USERDATA_MAX_BYTES = 16 * 1024  # EC2's limit before base64
PRESIGN_MAX_SEC = 7 * 24 * 3600  # SigV4 maximum
SPOT_REASONS = ("Server.SpotInstanceTermination", "Server.SpotInstanceShutdown")
ENDED = ("shutting-down", "terminated", "stopping", "stopped")
DELETED_FLEET = ("deleted", "deleted_running", "deleted_terminating")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FleetLaunchError(RuntimeError):
    """EC2 Fleet launched no instance (capacity, limits, bad AMI...). ``codes`` holds AWS's error codes.
    Retrying the same attempt returns the same answer on real AWS (ClientToken): use a new attempt."""

    def __init__(self, message: str, codes: list[str]):
        super().__init__(message)
        self.codes = codes


# --- pure helpers -----------------------------------------------------------------------------------------
def result_prefix(client_id: str, run_id: str, attempt: int) -> str:
    return f"runs/{client_id}/{run_id}/{attempt}/"


def render_userdata(
    *,
    artifact_url: str,
    artifact_sha256: str,
    log_url: str,
    result_url: str,
    run_id: str,
    data_uri: str | None,
    args: dict[str, Any],
    log_interval_sec: int = 30,
) -> str:
    """The bootstrap script for one attempt. Every value is shell-quoted, so args cannot inject commands.
    ``log_interval_sec``: seconds between log uploads while the app runs."""
    sha = artifact_sha256.strip().lower()
    if not _SHA256.match(sha):
        raise ValueError("artifact_sha256 must be 64 hex digits")
    values = {
        "ARTIFACT_URL": artifact_url,
        "ARTIFACT_SHA256": sha,
        "LOG_URL": log_url,
        "RESULT_URL": result_url,
        "LOG_INTERVAL": str(max(1, int(log_interval_sec))),
        "RUN_ID": run_id,
    }
    env = app_env(run_id, data_uri, args)
    values["DATA_URI"], values["ARGS_JSON"] = env["ORCH_DATA_URI"], env["ORCH_ARGS"]
    script = USERDATA_TEMPLATE.read_text()
    for key, value in values.items():
        script = script.replace(f"@@{key}@@", shlex.quote(value))
    script = script.replace("@@APP_ARGV@@", " ".join(shlex.quote(a) for a in app_argv(args)))
    if "@@" in script:
        raise AssertionError("unrendered placeholder in userdata.sh")
    size = len(script.encode())
    if size > USERDATA_MAX_BYTES:
        raise ValueError(f"user-data is {size} bytes, EC2 allows {USERDATA_MAX_BYTES}: make the args smaller")
    return script


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _attempt_of(resource: dict[str, Any]) -> int | None:
    try:
        return int(_tags(resource).get(TAG_ATTEMPT, ""))
    except ValueError:
        return None


def status_from(
    instances: list[dict[str, Any]],
    result: dict[str, Any] | None,
    *,
    launched_at: float | None = None,
    now: float | None = None,
    missing_grace_sec: float = 600.0,
) -> FleetStatus:
    """Map ``describe_instances`` output for one attempt plus its ``result.json`` (None if not uploaded)
    to a FleetStatus. The result wins: it is written before the instance powers off. Without one, an
    instance that ended is INTERRUPTED for a spot reclaim, TERMINATED when stopped through the API, else
    FAILED. No instance at all is PENDING for ``missing_grace_sec`` seconds after ``launched_at`` (describe
    calls lag on real AWS), TERMINATED after that."""
    ids = [i["InstanceId"] for i in instances]
    if result is not None:
        code = result.get("exit_code")
        if result.get("phase") == "app" and isinstance(code, int):
            if code == 0:
                return FleetStatus(FleetState.SUCCEEDED, exit_code=0, instance_ids=ids)
            return FleetStatus(
                FleetState.FAILED, exit_code=code, reason=f"app exited with code {code}", instance_ids=ids
            )
        return FleetStatus(
            FleetState.FAILED, reason=str(result.get("reason") or "bootstrap failed"), instance_ids=ids
        )
    if not instances:
        now = time.time() if now is None else now
        if launched_at is not None and now - launched_at > missing_grace_sec:
            return FleetStatus(FleetState.TERMINATED, reason="no instance of this attempt exists any more")
        return FleetStatus(FleetState.PENDING, reason="waiting for the instance to appear")
    states = [i["State"]["Name"] for i in instances]
    if "running" in states:
        return FleetStatus(FleetState.RUNNING, instance_ids=ids)
    if "pending" in states:
        return FleetStatus(FleetState.PENDING, reason="instance booting", instance_ids=ids)
    reasons = [(i.get("StateReason") or {}) for i in instances]
    codes = [r.get("Code") or "" for r in reasons]
    for code in codes:
        if code in SPOT_REASONS:
            return FleetStatus(FleetState.INTERRUPTED, reason=f"spot interruption ({code})", instance_ids=ids)
    if "Client.UserInitiatedShutdown" in codes:
        return FleetStatus(
            FleetState.TERMINATED, reason="instance terminated through the EC2 API", instance_ids=ids
        )
    if "Client.InstanceInitiatedShutdown" in codes:
        return FleetStatus(
            FleetState.FAILED, reason="instance shut down without reporting a result", instance_ids=ids
        )
    detail = next((f"{r.get('Code')}: {r.get('Message')}" for r in reasons if r.get("Code")), states[0])
    return FleetStatus(
        FleetState.FAILED, reason=f"instance ended without a result ({detail})", instance_ids=ids
    )


def _guess_arch(instance_type: str) -> str:
    # Graviton families have a 'g' right after the generation digit: m6g, c7gn, t4g, r8g...
    family = instance_type.split(".")[0]
    return "arm64" if re.match(r"^[a-z]+\d+g", family) else "x86_64"


# --- the driver -------------------------------------------------------------------------------------------
class Ec2FleetDriver:
    """EC2 Fleet in the client's account, through STS AssumeRole (``core.aws``)."""

    name = "ec2"

    def __init__(
        self, settings: Settings, s3_client_factory=s3_client, aws_client_factory=aws.client
    ) -> None:
        self.settings = settings
        self.s3_client_factory = s3_client_factory
        self.aws_client_factory = aws_client_factory
        self._s3_client = None
        ttl = settings.ec2_presign_ttl_sec
        self.presign_ttl_sec = min(ttl, PRESIGN_MAX_SEC)
        self.log_interval_sec = settings.ec2_log_upload_interval_sec
        self.terminate_timeout_sec = float(settings.ec2_terminate_timeout_sec)
        self.missing_grace_sec = float(settings.ec2_missing_instance_grace_sec)

    # --- FleetDriver ------------------------------------------------------------------------------------
    def launch(self, spec: LaunchSpec) -> FleetHandle:
        """Create the attempt's launch template and instant fleet, or re-attach to them if they exist.
        Raises FleetLaunchError when EC2 launched no instance, ValueError for an unusable spec."""
        access = self._check_spec(spec)
        ec2 = self.aws_client_factory("ec2", access, self.settings)
        handle = self._handle(spec, access)
        ref = handle.ref
        found = self._instances(ec2, spec.run_id, spec.attempt)
        fleets = [f for f in self._fleets(ec2, spec.run_id) if _attempt_of(f) == spec.attempt]
        fleet_ids = [iid for f in fleets for i in f.get("Instances", []) for iid in i.get("InstanceIds", [])]
        if found or fleet_ids or any(f.get("FleetState") in DELETED_FLEET for f in fleets):
            ref["instance_ids"] = sorted({i["InstanceId"] for i in found} | set(fleet_ids))
            ref["fleet_ids"] = [f["FleetId"] for f in fleets]
            ref["launch_template_id"] = self._template_id(ec2, ref["launch_template_name"])
            times = [i["LaunchTime"].timestamp() for i in found if isinstance(i.get("LaunchTime"), datetime)]
            ref["launched_at"] = min(times) if times else time.time()
            log.info(
                "ec2 fleet: run %s attempt %s already launched (%s); re-attached",
                spec.run_id,
                spec.attempt,
                ", ".join(ref["instance_ids"]) or "fleet only",
            )
            return handle
        lt_id = self._ensure_launch_template(ec2, spec, access, ref)
        ref["launch_template_id"] = lt_id
        resp = ec2.create_fleet(**self._fleet_request(spec, access, lt_id))
        ids = [iid for i in resp.get("Instances", []) for iid in i.get("InstanceIds", [])]
        ref["fleet_ids"] = [resp["FleetId"]] if resp.get("FleetId") else []
        if not ids:
            errors = resp.get("Errors", [])
            codes = sorted({e.get("ErrorCode", "?") for e in errors})
            detail = "; ".join(f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}" for e in errors)
            # the template stays (terminate removes it): a retry with the same ClientToken must send the
            # same parameters, or real AWS answers IdempotentParameterMismatch instead of this error
            raise FleetLaunchError(
                f"EC2 Fleet launched no instance for run {spec.run_id} attempt "
                f"{spec.attempt} ({spec.capacity}): {detail or 'no reason given'}",
                codes,
            )
        ref["instance_ids"] = ids
        ref["launched_at"] = time.time()
        log.info(
            "ec2 fleet: launched run %s attempt %s: %s %s %s in %s",
            spec.run_id,
            spec.attempt,
            spec.capacity,
            spec.instance_type,
            ",".join(ids),
            access.region,
        )
        return handle

    def poll(self, handle: FleetHandle) -> FleetStatus:
        """Instance state (by tag) and the uploaded result.json, mapped by :func:`status_from`."""
        ec2 = self.aws_client_factory("ec2", self._access(handle), self.settings)
        instances = self._instances(ec2, handle.run_id, handle.attempt)
        result = self._read_result(handle)  # after describe: the result is uploaded before power-off
        return status_from(
            instances,
            result,
            launched_at=handle.ref.get("launched_at"),
            missing_grace_sec=self.missing_grace_sec,
        )

    def terminate(self, handle: FleetHandle) -> FleetStatus:
        """Terminate every instance of the run with attempt <= the handle's (so a stale handle never stops
        a newer attempt), delete their fleets and launch templates, and repeat until EC2 confirms it
        (bounded by ``ec2_terminate_timeout_sec`` seconds; RuntimeError after that). Returns the final
        status: the app's own outcome if it reported one, else TERMINATED / INTERRUPTED."""
        ec2 = self.aws_client_factory("ec2", self._access(handle), self.settings)
        run_id, upto = handle.run_id, handle.attempt
        deadline = time.monotonic() + self.terminate_timeout_sec
        delay = 0.2
        while True:
            mine = [i for i in self._instances(ec2, run_id) if (_attempt_of(i) or 0) <= upto]
            live = [
                i["InstanceId"] for i in mine if i["State"]["Name"] not in ("shutting-down", "terminated")
            ]
            fleets = [
                f["FleetId"]
                for f in self._fleets(ec2, run_id)
                if (_attempt_of(f) or 0) <= upto and f.get("FleetState") not in DELETED_FLEET
            ]
            templates = [
                t["LaunchTemplateId"] for t in self._templates(ec2, run_id) if (_attempt_of(t) or 0) <= upto
            ]
            if not live and not fleets and not templates:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"termination of run {run_id} not confirmed after "
                    f"{self.terminate_timeout_sec:.0f}s: instances {live}, fleets {fleets}, "
                    f"templates {templates}"
                )
            if fleets:
                self._call(ec2.delete_fleets, FleetIds=fleets, TerminateInstances=True)
            if live:
                log.info("ec2 fleet: terminating %s of run %s", ",".join(live), run_id)
                self._call(ec2.terminate_instances, InstanceIds=live)
            self._delete_templates(ec2, templates)
            time.sleep(delay)  # EC2 is eventually consistent: look again before declaring victory
            delay = min(delay * 2, 5.0)
        status = self.poll(handle)
        if status.state in (FleetState.PENDING, FleetState.RUNNING):
            return FleetStatus(
                FleetState.TERMINATED, reason="terminated by request", instance_ids=status.instance_ids
            )
        return status

    def logs(self, handle: FleetHandle, tail_bytes: int = 65536) -> str:
        """The last ``tail_bytes`` bytes of the log the instance uploaded ("" before the first upload)."""
        s3 = self._s3()
        try:
            obj = s3.get_object(
                Bucket=handle.ref.get("result_bucket", self.settings.s3_bucket),
                Key=handle.ref["log_key"],
                Range=f"bytes=-{max(1, int(tail_bytes))}",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange", "NotFound"):
                return ""
            raise
        data = obj["Body"].read()
        return data[-tail_bytes:].decode("utf-8", errors="replace") if tail_bytes > 0 else ""

    # --- internals ------------------------------------------------------------------------------------
    def _s3(self):
        if self._s3_client is None:  # boto3 clients are thread-safe; building one costs ~0.1 s
            self._s3_client = self.s3_client_factory(self.settings)
        return self._s3_client

    def _check_spec(self, spec: LaunchSpec) -> AwsAccess:
        if spec.aws is None:
            raise ValueError("the ec2 driver needs LaunchSpec.aws (the client's role)")
        safe_path_part(spec.run_id, "run_id")
        safe_path_part(spec.client_id, "client_id")
        if spec.capacity not in (Capacity.ON_DEMAND, Capacity.SPOT):
            raise ValueError(f"capacity must be 'on-demand' or 'spot', got {spec.capacity!r}")
        if spec.count != 1:
            raise ValueError("the ec2 driver runs one instance per attempt (count=1)")
        return spec.aws

    def _handle(self, spec: LaunchSpec, access: AwsAccess) -> FleetHandle:
        prefix = result_prefix(spec.client_id, spec.run_id, spec.attempt)
        ref = {
            "region": access.region,
            "client_id": spec.client_id,
            "capacity": spec.capacity,
            # what poll/terminate need to assume the role again; the external ID is not a secret (AWS)
            "aws": {
                "role_arn": access.role_arn,
                "external_id": access.external_id,
                "session_name": access.session_name,
                "region": access.region,
            },
            "launch_template_name": f"orch-{spec.run_id}-{spec.attempt}",
            "result_bucket": self.settings.s3_bucket,
            "log_key": prefix + "log",
            "result_key": prefix + "result.json",
            "instance_ids": [],
            "fleet_ids": [],
        }
        return FleetHandle(driver=self.name, run_id=spec.run_id, attempt=spec.attempt, ref=ref)

    def _access(self, handle: FleetHandle) -> AwsAccess:
        a = handle.ref["aws"]
        return AwsAccess(
            role_arn=a["role_arn"],
            external_id=a["external_id"],
            session_name=a["session_name"],
            region=a["region"],
        )

    def _read_result(self, handle: FleetHandle) -> dict[str, Any] | None:
        key = handle.ref.get("result_key")
        if key is None and handle.ref.get("client_id"):  # a handle rebuilt after a launch cut short
            key = result_prefix(handle.ref["client_id"], handle.run_id, handle.attempt) + "result.json"
        if key is None:
            return None  # nothing to read it by: instance states alone decide
        s3 = self._s3()
        try:
            body = s3.get_object(Bucket=handle.ref.get("result_bucket", self.settings.s3_bucket), Key=key)[
                "Body"
            ].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        try:
            out = json.loads(body)
        except ValueError:
            out = None
        if not isinstance(out, dict):
            return {"phase": "bootstrap", "reason": "bootstrap: unreadable result.json"}
        return out

    @staticmethod
    def _call(fn, **kwargs) -> Any:
        """A cleanup call whose failure is retried by the caller's loop, not raised."""
        try:
            return fn(**kwargs)
        except ClientError as exc:
            log.info("ec2 fleet: %s: %s", fn.__name__, exc.response.get("Error", {}).get("Code"))
            return None

    def _instances(self, ec2, run_id: str, attempt: int | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
        if attempt is not None:
            filters.append({"Name": f"tag:{TAG_ATTEMPT}", "Values": [str(attempt)]})
        out = []
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for r in page.get("Reservations", []):
                out.extend(r.get("Instances", []))
        return out

    def _fleets(self, ec2, run_id: str) -> list[dict[str, Any]]:
        # DescribeFleets cannot filter by tag: filter here
        out: list[dict[str, Any]] = []
        for page in ec2.get_paginator("describe_fleets").paginate():
            out.extend(f for f in page.get("Fleets", []) if _tags(f).get(TAG_RUN) == run_id)
        return out

    def _templates(self, ec2, run_id: str) -> list[dict[str, Any]]:
        out = []
        for page in ec2.get_paginator("describe_launch_templates").paginate(
            Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
        ):
            out.extend(page.get("LaunchTemplates", []))
        return out

    def _template_id(self, ec2, name: str) -> str | None:
        try:
            lts = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        except ClientError as exc:
            if "NotFound" in exc.response.get("Error", {}).get("Code", ""):
                return None
            raise
        return lts[0]["LaunchTemplateId"] if lts else None

    def _delete_templates(self, ec2, ids: list[str]) -> None:
        for lt_id in ids:
            self._call(ec2.delete_launch_template, LaunchTemplateId=lt_id)

    def _tag_list(self, spec: LaunchSpec) -> list[dict[str, str]]:
        return [
            {"Key": TAG_RUN, "Value": spec.run_id},
            {"Key": TAG_ATTEMPT, "Value": str(spec.attempt)},
            {"Key": TAG_CLIENT, "Value": spec.client_id},
            {"Key": "Name", "Value": f"orch-{spec.run_id}-{spec.attempt}"},
        ]

    def _ensure_launch_template(self, ec2, spec: LaunchSpec, access: AwsAccess, ref: dict[str, Any]) -> str:
        name = ref["launch_template_name"]
        existing = self._template_id(ec2, name)
        if existing:
            return existing
        ami = spec.ami_id or self._default_ami(ec2, access, spec.instance_type)
        s3 = self._s3()
        ttl = self.presign_ttl_sec
        bucket = ref["result_bucket"]
        artifact = {"Bucket": spec.artifact_bucket, "Key": spec.artifact_key}
        user_data = render_userdata(
            artifact_url=s3.generate_presigned_url("get_object", Params=artifact, ExpiresIn=ttl),
            artifact_sha256=spec.artifact_sha256,
            log_url=s3.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": ref["log_key"]}, ExpiresIn=ttl
            ),
            result_url=s3.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": ref["result_key"]}, ExpiresIn=ttl
            ),
            run_id=spec.run_id,
            data_uri=spec.data_uri,
            args=spec.args,
            log_interval_sec=self.log_interval_sec,
        )
        tags = self._tag_list(spec)
        data: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": spec.instance_type,
            "InstanceInitiatedShutdownBehavior": "terminate",
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if access.security_group_ids:
            data["SecurityGroupIds"] = list(access.security_group_ids)
        if access.instance_profile_arn:
            data["IamInstanceProfile"] = {"Arn": access.instance_profile_arn}
        try:
            lt = ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData=data,
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
            )
            return lt["LaunchTemplate"]["LaunchTemplateId"]
        except ClientError as exc:
            if "AlreadyExists" not in exc.response.get("Error", {}).get("Code", ""):
                raise
            lt_id = self._template_id(ec2, name)  # a concurrent launch made it first
            if not lt_id:
                raise
            return lt_id

    def _fleet_request(self, spec: LaunchSpec, access: AwsAccess, lt_id: str) -> dict[str, Any]:
        token = f"orch-{spec.run_id}-{spec.attempt}"
        if len(token) > 64:
            token = "orch-" + hashlib.sha256(token.encode()).hexdigest()[:59]
        overrides = [{"InstanceType": spec.instance_type, "SubnetId": s} for s in access.subnet_ids] or [
            {"InstanceType": spec.instance_type}
        ]
        target: dict[str, Any] = {"TotalTargetCapacity": 1, "DefaultTargetCapacityType": spec.capacity}
        req: dict[str, Any] = {
            "Type": "instant",
            "ClientToken": token,
            "LaunchTemplateConfigs": [
                {
                    "LaunchTemplateSpecification": {"LaunchTemplateId": lt_id, "Version": "$Latest"},
                    "Overrides": overrides,
                }
            ],
            "TargetCapacitySpecification": target,
            "TagSpecifications": [{"ResourceType": "fleet", "Tags": self._tag_list(spec)}],
        }
        if spec.capacity == Capacity.SPOT:
            target["SpotTargetCapacity"] = 1
            req["SpotOptions"] = {
                "AllocationStrategy": "price-capacity-optimized",
                "InstanceInterruptionBehavior": "terminate",
            }
        else:
            target["OnDemandTargetCapacity"] = 1
            req["OnDemandOptions"] = {"AllocationStrategy": "lowest-price"}
        return req

    def _arch(self, ec2, instance_type: str) -> str:
        try:
            info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
            archs = info[0]["ProcessorInfo"]["SupportedArchitectures"] if info else []
        except (ClientError, BotoCoreError, KeyError):
            archs = []
        if "x86_64" in archs:
            return "x86_64"
        if "arm64" in archs:
            return "arm64"
        return _guess_arch(instance_type)

    def _default_ami(self, ec2, access: AwsAccess, instance_type: str) -> str:
        """The region's latest Amazon Linux 2023 AMI for the instance type's architecture: the public SSM
        parameter, or the newest matching Amazon-owned image if SSM cannot be read."""
        arch = self._arch(ec2, instance_type)
        try:
            ssm = self.aws_client_factory("ssm", access, self.settings)
            return ssm.get_parameter(Name=AL2023_SSM[arch])["Parameter"]["Value"]
        except (ClientError, BotoCoreError) as exc:
            log.info("ec2 fleet: SSM AMI parameter unavailable (%s); searching images", type(exc).__name__)
        return ami_from_images(ec2, arch)


def ami_from_images(ec2, arch: str) -> str:
    """Newest available Amazon-owned AL2023 image of ``arch`` (the fallback when SSM is unavailable)."""
    images = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "name", "Values": [f"al2023-ami-2023.*-kernel-*-{arch}"]},
            {"Name": "architecture", "Values": [arch]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if not images:
        raise RuntimeError(f"no Amazon Linux 2023 image found for {arch}; set the fleet template's AMI")
    return max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]

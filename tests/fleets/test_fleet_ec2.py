"""The ec2 fleet driver against moto's standalone server (STS, EC2, SSM) with SeaweedFS as the store.

moto never boots an instance or runs user-data; where a test needs the instance's part, it runs the
rendered user-data itself with ``sh`` (as tests/fleets/test_userdata.py does) or writes result.json.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess

import boto3
import pytest

from core.aws import assume_role
from fleets import get_driver
from fleets.base import AwsAccess, FleetHandle, FleetState, LaunchSpec
from fleets.ec2 import (
    AL2023_SSM,
    TAG_ATTEMPT,
    TAG_CLIENT,
    TAG_RUN,
    Ec2FleetDriver,
    ami_from_images,
    status_from,
)
from tests.support.common import make_settings
from tests.support.fleet import FLEET_BUCKET

ACCESS = AwsAccess(
    role_arn="arn:aws:iam::123456789012:role/OrchestratorAccess",
    external_id="ext-4f1b2c3d4e5f60718293a4b5",
    session_name="orch-client_test",
    region="us-east-1",
)


@pytest.fixture
def settings(tmp_path, s3_settings, moto_endpoint, aws_env):  # noqa: F811
    return make_settings(tmp_path, aws_endpoint_url=moto_endpoint, s3_bucket=FLEET_BUCKET, **s3_settings)


@pytest.fixture
def driver(settings):
    return Ec2FleetDriver(settings)


@pytest.fixture
def ec2(moto_endpoint, aws_env):  # noqa: F811
    """The account's EC2 as its owner sees it (moto: same account as the assumed role)."""
    return boto3.client("ec2", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def spec(upload_app):  # noqa: F811
    def _spec(files=None, **kw):
        files = files or {"main.py": "import sys; print('hello', sys.argv[1:])\n"}
        return upload_app(files, aws=ACCESS, instance_type="m5.large", **kw)

    return _spec


def run_instances(ec2, run_id, attempt=None, live_only=False):
    filters = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    if attempt is not None:
        filters.append({"Name": f"tag:{TAG_ATTEMPT}", "Values": [str(attempt)]})
    out = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    return [i for i in out if i["State"]["Name"] not in ("shutting-down", "terminated")] if live_only else out


def run_fleets(ec2, run_id):
    return [
        f
        for f in ec2.describe_fleets()["Fleets"]
        if {t["Key"]: t["Value"] for t in f.get("Tags", [])}.get(TAG_RUN) == run_id
    ]


def run_templates(ec2, run_id):
    flt = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    return ec2.describe_launch_templates(Filters=flt)["LaunchTemplates"]


def tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def put_result(s3, handle, body):  # noqa: F811
    s3.put_object(Bucket=FLEET_BUCKET, Key=handle.ref["result_key"], Body=json.dumps(body).encode())


def test_registry(settings):
    assert isinstance(get_driver("ec2", settings), Ec2FleetDriver)


def test_launch_is_idempotent_and_tagged(driver, settings, spec, ec2):
    sp = spec(args={"alpha": 1})
    h1 = driver.launch(sp)
    h2 = driver.launch(sp)  # the activity ran twice
    h3 = Ec2FleetDriver(settings).launch(sp)  # ... on another worker
    live = run_instances(ec2, sp.run_id, live_only=True)
    assert len(live) == 1
    assert h1.ref["instance_ids"] == h2.ref["instance_ids"] == h3.ref["instance_ids"]
    assert h1.ref["instance_ids"] == [live[0]["InstanceId"]]
    inst = live[0]
    assert tags(inst)[TAG_RUN] == sp.run_id and tags(inst)[TAG_ATTEMPT] == "1"
    assert tags(inst)[TAG_CLIENT] == "client_test"
    assert inst.get("InstanceLifecycle") != "spot" and inst["InstanceType"] == "m5.large"
    fleets = run_fleets(ec2, sp.run_id)
    assert len(fleets) == 1 and fleets[0]["Type"] == "instant"
    assert fleets[0]["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "on-demand"
    assert tags(fleets[0])[TAG_CLIENT] == "client_test"
    lts = run_templates(ec2, sp.run_id)
    assert len(lts) == 1 and lts[0]["LaunchTemplateName"] == f"orch-{sp.run_id}-1"
    assert tags(lts[0])[TAG_ATTEMPT] == "1"
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lts[0]["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    ssm = boto3.client("ssm", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    assert data["ImageId"] == ssm.get_parameter(Name=AL2023_SSM["x86_64"])["Parameter"]["Value"]
    script = base64.b64decode(data["UserData"]).decode()
    assert sp.artifact_sha256 in script and "X-Amz-Signature" in script and "--alpha=1" in script
    assert driver.poll(h1).state == FleetState.RUNNING
    driver.terminate(h1)


def test_spot_capacity(driver, spec, ec2):
    sp = spec(capacity="spot")
    h = driver.launch(sp)
    inst = run_instances(ec2, sp.run_id)[0]
    assert inst["InstanceLifecycle"] == "spot"
    fleet = run_fleets(ec2, sp.run_id)[0]
    assert fleet["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "spot"
    assert h.ref["capacity"] == "spot"
    driver.terminate(h)


def test_launch_after_a_crash_between_template_and_fleet(driver, spec, ec2):
    sp = spec()
    handle = driver._handle(sp, ACCESS)
    ec2_role = driver.aws_client_factory("ec2", ACCESS, driver.settings)
    lt_id = driver._ensure_launch_template(ec2_role, sp, ACCESS, handle.ref)  # crashed right after this
    h = driver.launch(sp)
    assert h.ref["launch_template_id"] == lt_id
    assert len(run_templates(ec2, sp.run_id)) == 1
    assert len(run_instances(ec2, sp.run_id)) == 1
    driver.terminate(h)


def test_explicit_ami_subnet_security_group_and_profile(driver, spec, ec2):
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"orch-{vpc}", Description="t", VpcId=vpc)["GroupId"]
    ami = ami_from_images(ec2, "x86_64")
    access = AwsAccess(
        **{
            **ACCESS.__dict__,
            "subnet_ids": [subnet],
            "security_group_ids": [sg],
            "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/orch-app",
        }
    )
    sp = spec(ami_id=ami)
    sp.aws = access
    h = driver.launch(sp)
    inst = run_instances(ec2, sp.run_id)[0]
    assert inst["SubnetId"] == subnet and inst["ImageId"] == ami
    data = ec2.describe_launch_template_versions(LaunchTemplateId=h.ref["launch_template_id"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["SecurityGroupIds"] == [sg]
    assert data["IamInstanceProfile"]["Arn"].endswith("instance-profile/orch-app")
    driver.terminate(h)


def test_result_object_decides_the_outcome(driver, spec, s3):  # noqa: F811
    h = driver.launch(spec())
    assert driver.poll(h).state == FleetState.RUNNING
    assert driver.logs(h) == ""
    s3.put_object(Bucket=FLEET_BUCKET, Key=h.ref["log_key"], Body=b"line one\nline two\n")
    assert driver.logs(h) == "line one\nline two\n"
    assert driver.logs(h, tail_bytes=9) == "line two\n"
    put_result(s3, h, {"phase": "app", "exit_code": 3, "reason": "app exited with code 3"})
    st = driver.poll(h)
    assert (st.state, st.exit_code) == (FleetState.FAILED, 3) and st.instance_ids == h.ref["instance_ids"]
    put_result(s3, h, {"phase": "bootstrap", "exit_code": None, "reason": "bootstrap: checksum mismatch"})
    st = driver.poll(h)
    assert (st.state, st.exit_code, st.reason) == (FleetState.FAILED, None, "bootstrap: checksum mismatch")
    put_result(s3, h, {"phase": "app", "exit_code": 0, "reason": "app exited with code 0"})
    assert driver.poll(h).state == FleetState.SUCCEEDED
    # success still ends with nothing left running and the template gone; the outcome stays SUCCEEDED
    assert driver.terminate(h).state == FleetState.SUCCEEDED


def test_spot_interruption_maps_to_interrupted(driver, spec, ec2):
    """moto cannot reclaim a spot instance: terminate it for real, then give moto's describe_instances
    output the state reason AWS sets on a reclaim (Server.SpotInstanceTermination)."""
    h = driver.launch(spec(capacity="spot"))
    ec2.terminate_instances(InstanceIds=h.ref["instance_ids"])
    instances = run_instances(ec2, h.run_id, 1)
    assert instances[0]["State"]["Name"] == "terminated"
    assert instances[0]["StateReason"]["Code"] == "Client.UserInitiatedShutdown"  # what moto records
    assert driver.poll(h).state == FleetState.TERMINATED
    reason = {
        "Code": "Server.SpotInstanceTermination",
        "Message": "Server.SpotInstanceTermination: Spot instance termination",
    }
    reclaimed = [{**i, "StateReason": reason} for i in instances]
    st = status_from(reclaimed, None)
    assert st.state == FleetState.INTERRUPTED and "SpotInstanceTermination" in st.reason
    assert st.instance_ids == h.ref["instance_ids"]
    # a result uploaded before the reclaim still wins
    assert status_from(reclaimed, {"phase": "app", "exit_code": 0}).state == FleetState.SUCCEEDED
    driver.terminate(h)


def test_status_mapping_of_other_states(driver, spec, ec2):
    h = driver.launch(spec())
    running = run_instances(ec2, h.run_id, 1)
    assert status_from(running, None).state == FleetState.RUNNING
    pending = [{**i, "State": {"Code": 0, "Name": "pending"}} for i in running]
    assert status_from(pending, None).state == FleetState.PENDING
    self_stopped = [
        {
            **i,
            "State": {"Code": 48, "Name": "terminated"},
            "StateReason": {"Code": "Client.InstanceInitiatedShutdown", "Message": "x"},
        }
        for i in running
    ]
    st = status_from(self_stopped, None)
    assert st.state == FleetState.FAILED and "without reporting a result" in st.reason
    assert status_from([], None, launched_at=100.0, now=200.0).state == FleetState.PENDING
    assert status_from([], None, launched_at=100.0, now=100.0 + 3600).state == FleetState.TERMINATED
    driver.terminate(h)


def test_terminate_leaves_nothing_behind(driver, spec, ec2):
    sp = spec()
    h1 = driver.launch(sp)
    sp2 = spec(run_id=sp.run_id, attempt=2)
    h2 = driver.launch(sp2)
    assert len(run_instances(ec2, sp.run_id, live_only=True)) == 2
    # a stale handle (attempt 1) must not stop the newer attempt
    assert driver.terminate(h1).state == FleetState.TERMINATED
    live = run_instances(ec2, sp.run_id, live_only=True)
    assert [tags(i)[TAG_ATTEMPT] for i in live] == ["2"]
    assert [tags(t)[TAG_ATTEMPT] for t in run_templates(ec2, sp.run_id)] == ["2"]
    st = driver.terminate(h2)
    assert st.state == FleetState.TERMINATED
    assert run_instances(ec2, sp.run_id, live_only=True) == []
    assert run_templates(ec2, sp.run_id) == []
    assert all(f["FleetState"].startswith("deleted") for f in run_fleets(ec2, sp.run_id))
    assert driver.terminate(h2).state == FleetState.TERMINATED  # idempotent
    # a retried launch of a terminated attempt re-attaches; it never starts a new instance
    assert driver.launch(sp2).ref["instance_ids"] == h2.ref["instance_ids"]
    assert run_instances(ec2, sp.run_id, live_only=True) == []


def test_instance_part_played_by_the_test(driver, spec, ec2, tmp_path, s3):  # noqa: F811
    """Run the user-data moto stored in the launch template, as the instance would: SUCCEEDED, log
    readable."""
    app = {"main.py": "import os, sys; print('hi from', os.environ['ORCH_RUN_ID'], sys.argv[1:])\n"}
    h = driver.launch(spec(app, args={"n": 2}))
    data = ec2.describe_launch_template_versions(LaunchTemplateId=h.ref["launch_template_id"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    script = tmp_path / "user-data"
    script.write_bytes(base64.b64decode(data["UserData"]))
    env = {**os.environ, "ORCH_NO_POWEROFF": "1", "ORCH_WORK_DIR": str(tmp_path / "work")}
    subprocess.run(["sh", str(script)], env=env, check=True, timeout=60)
    assert driver.poll(h).state == FleetState.SUCCEEDED
    assert f"hi from {h.run_id} ['--n=2']" in driver.logs(h)
    assert driver.terminate(h).state == FleetState.SUCCEEDED
    assert run_instances(ec2, h.run_id, live_only=True) == []


def test_credentials_never_in_handle_or_logs(driver, spec, settings, caplog):
    caplog.set_level(logging.DEBUG, logger="fleets")
    caplog.set_level(logging.DEBUG, logger="core")
    h = driver.launch(spec())
    driver.poll(h)
    driver.terminate(h)
    creds = assume_role(ACCESS, settings)  # the cached credentials the driver used
    stored = json.dumps(h.ref) + caplog.text
    for secret in (
        creds.secret_access_key,
        creds.session_token,
        creds.access_key_id,
        settings.s3_secret_access_key,
    ):
        assert secret not in stored


def test_unusable_specs_refused(driver, spec):
    sp = spec()
    sp.aws = None
    with pytest.raises(ValueError, match="LaunchSpec.aws"):
        driver.launch(sp)
    with pytest.raises(ValueError, match="capacity"):
        driver.launch(spec(capacity="cheap"))
    with pytest.raises(ValueError, match="count"):
        driver.launch(spec(count=2))


def test_arm_instance_types_get_arm_images(driver, ec2):
    assert driver._arch(ec2, "m6g.large") == "arm64"
    assert driver._arch(ec2, "m5.large") == "x86_64"
    arm = ami_from_images(ec2, "arm64")
    assert ec2.describe_images(ImageIds=[arm])["Images"][0]["Architecture"] == "arm64"


def test_terminate_unknown_handle_is_a_noop(driver):
    sp = LaunchSpec(
        run_id="run_never_launched",
        attempt=1,
        client_id="client_test",
        artifact_bucket=FLEET_BUCKET,
        artifact_key="x",
        artifact_sha256="0" * 64,
        args={},
        data_uri=None,
        aws=ACCESS,
    )
    h = driver._handle(sp, ACCESS)
    assert driver.terminate(h).state == FleetState.TERMINATED


def test_terminate_with_a_rebuilt_handle(driver, spec, ec2):
    """Cancelled while launch_fleet ran, the workflow holds no handle: the activity rebuilds one with the
    role only (older workers) or with the client id too. Either terminates the attempt and never fails on
    the missing result key (it did: KeyError 'result_key', retried for ever)."""
    sp = spec()
    driver.launch(sp)
    aws = {"role_arn": ACCESS.role_arn, "external_id": ACCESS.external_id,
           "session_name": ACCESS.session_name, "region": ACCESS.region}  # fmt: skip
    assert driver.terminate(FleetHandle("ec2", sp.run_id, 1, {"aws": aws})).state == FleetState.TERMINATED
    assert run_instances(ec2, sp.run_id, live_only=True) == []
    sp2 = spec(run_id=sp.run_id, attempt=2)
    driver.launch(sp2)
    rebuilt = FleetHandle("ec2", sp.run_id, 2, {"aws": aws, "client_id": sp.client_id})
    assert driver.terminate(rebuilt).state == FleetState.TERMINATED
    assert run_instances(ec2, sp.run_id, live_only=True) == []

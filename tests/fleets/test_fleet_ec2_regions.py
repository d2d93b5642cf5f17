"""A run launches in its recorded region (issue 14), through the real activities (a SQLite DB, the ``ec2``
driver, moto's STS/EC2/SSM server, SeaweedFS for the artifact): the client's home is eu-central-1, the
run's region eu-west-3. The planner's choice is simulated by the plan update it records (the planner part
lands separately); the workflow's part (relaunch after a spot interruption, cancel) is played step by step.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.request

import boto3
import pytest
from temporalio.testing import ActivityEnvironment

from activities.run_activities import RunActivities
from core.db import Database
from core.migrate import upgrade
from fleets.ec2 import AL2023_SSM, TAG_RUN, Ec2FleetDriver
from models.db import Artifact, Client, Job, JobTemplate, Run, utcnow
from models.domain import Capacity
from models.fleet import FleetHandle
from models.workflow import LaunchCheckRequest, LaunchRequest, RunUpdate
from tests.support.common import make_settings
from tests.support.fleet import FLEET_BUCKET, make_app_zip

HOME, PARIS = "eu-central-1", "eu-west-3"
ROLE = "arn:aws:iam::123456789012:role/OrchestratorAccess"


@pytest.fixture
def settings(tmp_path, s3_settings, moto_endpoint, aws_env):
    return make_settings(tmp_path, aws_endpoint_url=moto_endpoint, s3_bucket=FLEET_BUCKET, **s3_settings)


@pytest.fixture
def db(settings):
    upgrade(settings)
    d = Database(settings)
    yield d
    d.dispose()


def owner(service: str, region: str, settings):
    """The account as its owner sees it (moto: the same account as the assumed role)."""
    return boto3.client(service, endpoint_url=settings.aws_endpoint_url, region_name=region)


def network(settings, region: str) -> tuple[str, str]:
    """A subnet and a security group of a fresh VPC in ``region``."""
    ec2 = owner("ec2", region, settings)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"orch-{secrets.token_hex(3)}", Description="t", VpcId=vpc)
    return subnet, sg["GroupId"]


def live(settings, region: str, run_id: str) -> list[dict]:
    resp = owner("ec2", region, settings).describe_instances(
        Filters=[
            {"Name": f"tag:{TAG_RUN}", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    return [i for r in resp["Reservations"] for i in r["Instances"]]


@pytest.fixture
def world(settings, db, s3):
    """Client (home eu-central-1, allowed eu-central-1 + eu-west-3, launch settings for both), artifact,
    template, job and a run not yet planned; the activities over the ec2 driver."""
    home_net, paris_net = network(settings, HOME), network(settings, PARIS)
    data = make_app_zip({"main.py": "print('bonjour')\n"})
    key = f"cl_regions/apps/{secrets.token_hex(4)}/app.zip"
    s3.put_object(Bucket=FLEET_BUCKET, Key=key, Body=data)
    suffix = secrets.token_hex(4)
    ids = {k: f"{k}_{suffix}" for k in ("cl", "art", "tpl", "job", "run")}
    with db.session() as s:
        s.add(
            Client(
                id=ids["cl"], name="regions", status="active", api_key_hash=secrets.token_hex(32),
                api_key_prefix="x", role_arn=ROLE, external_id=f"ext-{suffix}", region_default=HOME,
                session_name_template="orch-{run_id}", subnet_ids=[home_net[0]],
                security_group_ids=[home_net[1]], allowed_regions=[HOME, PARIS],
                region_settings={
                    PARIS: {"subnet_ids": [paris_net[0]], "security_group_ids": [paris_net[1]]}
                },
            )
        )  # fmt: skip
        s.flush()
        s.add(
            Artifact(
                id=ids["art"], client_id=ids["cl"], name="app.zip", version="1", entry_point="main.py",
                sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), s3_bucket=FLEET_BUCKET,
                s3_key=key,
            )
        )  # fmt: skip
        s.flush()
        s.add(
            JobTemplate(
                id=ids["tpl"], client_id=ids["cl"], name="t", app_artifact_id=ids["art"],
                fleet_template_id="m5.large", default_args={},
            )
        )  # fmt: skip
        s.flush()
        s.add(
            Job(
                id=ids["job"], client_id=ids["cl"], job_template_id=ids["tpl"], type="ONE_TIME",
                intended_time=utcnow(), risk_mode="NEUTRAL", request_hash="x", regions=[HOME, PARIS],
            )
        )  # fmt: skip
        s.flush()
        s.add(
            Run(
                id=ids["run"], job_id=ids["job"], client_id=ids["cl"], job_template_id=ids["tpl"],
                fleet_template_id="m5.large", workflow_id=ids["run"], status="PENDING",
            )
        )  # fmt: skip
    acts = RunActivities(settings, db, Ec2FleetDriver(settings))
    world = {"acts": acts, "env": ActivityEnvironment(), "home_net": home_net, "paris_net": paris_net}
    world |= ids
    yield world
    for region in (HOME, PARIS):  # never leave an instance behind, whatever the test did
        ids_left = [i["InstanceId"] for i in live(settings, region, ids["run"])]
        if ids_left:
            owner("ec2", region, settings).terminate_instances(InstanceIds=ids_left)


async def plan(w, region: str, status: str = "SCHEDULED") -> None:
    """What the workflow records after a (re-)plan: the planner's doc carries the chosen region."""
    doc = {"region": region, "proposed_start": utcnow().isoformat()}
    await w["env"].run(w["acts"].update_run, RunUpdate(run_id=w["run"], status=status, plan=doc))


def run_row(db, run_id: str) -> Run:
    with db.session() as s:
        return s.get_one(Run, run_id)


async def test_a_run_planned_for_paris_launches_there_and_cancel_leaves_nothing(world, settings, db):
    w = world
    await plan(w, HOME)
    await plan(w, PARIS)  # a RESCHEDULABLE re-plan before launch may change the region
    assert run_row(db, w["run"]).region == PARIS
    handle = await w["env"].run(w["acts"].launch_fleet, LaunchRequest(run_id=w["run"], attempt=1))
    assert handle.ref["region"] == PARIS and handle.ref["aws"]["region"] == PARIS
    paris = live(settings, PARIS, w["run"])
    assert [i["InstanceId"] for i in paris] == handle.ref["instance_ids"]
    assert live(settings, HOME, w["run"]) == []  # nothing in the home region
    inst = paris[0]
    assert inst["SubnetId"] == w["paris_net"][0]  # the region's own launch settings
    ec2 = owner("ec2", PARIS, settings)
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"orch-{w['run']}-1"])["LaunchTemplates"][0]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    paris_ami = owner("ssm", PARIS, settings).get_parameter(Name=AL2023_SSM["x86_64"])["Parameter"]["Value"]
    home_ami = owner("ssm", HOME, settings).get_parameter(Name=AL2023_SSM["x86_64"])["Parameter"]["Value"]
    assert data["ImageId"] == paris_ami != home_ami  # the AMI of the region's SSM parameter
    assert data["SecurityGroupIds"] == [w["paris_net"][1]]
    # the artifact reaches the instance by a presigned URL of the artifact store, whatever the region
    script = base64.b64decode(data["UserData"]).decode()
    url = re.search(r"^ARTIFACT_URL='([^']+)'", script, re.M).group(1)
    assert url.startswith(settings.s3_endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - the test's own SeaweedFS
        body = resp.read()
    with db.session() as s:
        assert hashlib.sha256(body).hexdigest() == s.get_one(Artifact, w["art"]).sha256
    # cancel: the workflow terminates the attempt it holds
    await w["env"].run(w["acts"].terminate_fleet, handle)
    assert live(settings, PARIS, w["run"]) == [] and live(settings, HOME, w["run"]) == []


async def test_cancel_during_launch_finds_the_attempt_in_the_runs_region(world, settings):
    """Cancelled while launch_fleet ran, the workflow holds no handle: terminate rebuilds one from the run,
    which must look in the run's region, not the home region."""
    w = world
    await plan(w, PARIS)
    await w["env"].run(w["acts"].launch_fleet, LaunchRequest(run_id=w["run"], attempt=1))
    assert len(live(settings, PARIS, w["run"])) == 1
    await w["env"].run(w["acts"].terminate_fleet, FleetHandle(driver="unknown", run_id=w["run"], attempt=1))
    assert live(settings, PARIS, w["run"]) == [] and live(settings, HOME, w["run"]) == []


async def test_spot_interruption_relaunches_on_demand_in_the_same_region(world, settings, db):
    w = world
    env, acts = w["env"], w["acts"]
    await plan(w, PARIS)
    req = LaunchRequest(run_id=w["run"], attempt=1, capacity=Capacity.SPOT)
    await env.run(acts.update_run, RunUpdate(run_id=w["run"], status="LAUNCHING", attempts=1))
    first = await env.run(acts.launch_fleet, req)
    spot = live(settings, PARIS, w["run"])
    assert len(spot) == 1 and spot[0].get("InstanceLifecycle") == "spot"
    await env.run(
        acts.update_run,
        RunUpdate(run_id=w["run"], status="RUNNING", fleet=first.as_json(), started_at=utcnow()),
    )
    # the reclaim (moto cannot set its state reason; the workflow's reaction is what matters here)
    owner("ec2", PARIS, settings).terminate_instances(InstanceIds=first.ref["instance_ids"])
    # a plan update that arrives after launch (it never does from today's workflow) must not move the run
    await plan(w, HOME, status="RUNNING")
    assert run_row(db, w["run"]).region == PARIS
    await env.run(acts.terminate_fleet, first)
    await env.run(acts.update_run, RunUpdate(run_id=w["run"], status="LAUNCHING", attempts=2))
    second = await env.run(
        acts.launch_fleet, LaunchRequest(run_id=w["run"], attempt=2, capacity=Capacity.ON_DEMAND)
    )
    assert second.ref["region"] == PARIS
    relaunched = live(settings, PARIS, w["run"])
    assert [i["InstanceId"] for i in relaunched] == second.ref["instance_ids"]
    assert relaunched[0].get("InstanceLifecycle") != "spot"  # on-demand
    assert live(settings, HOME, w["run"]) == []
    await env.run(acts.terminate_fleet, second)
    assert live(settings, PARIS, w["run"]) == []


async def test_launch_settings_by_region(world, db):
    """Old runs (no region) launch in the home region with the top-level settings; a region without its own
    settings gets none (its default VPC)."""
    w = world
    spec = w["acts"]._spec(LaunchRequest(run_id=w["run"], attempt=1))
    assert spec.aws.region == HOME and spec.aws.subnet_ids == [w["home_net"][0]]
    assert spec.aws.security_group_ids == [w["home_net"][1]]
    with db.session() as s:
        s.get_one(Run, w["run"]).region = "eu-north-1"
    spec = w["acts"]._spec(LaunchRequest(run_id=w["run"], attempt=1))
    assert spec.aws.region == "eu-north-1"
    assert spec.aws.subnet_ids == [] and spec.aws.security_group_ids == []


async def test_no_launch_in_a_region_the_client_no_longer_allows(world, db):
    w = world
    await plan(w, PARIS)
    check = await w["env"].run(w["acts"].check_launch, LaunchCheckRequest(run_id=w["run"]))
    assert check.allowed
    with db.session() as s:
        s.get_one(Client, w["cl"]).allowed_regions = [HOME]
    check = await w["env"].run(w["acts"].check_launch, LaunchCheckRequest(run_id=w["run"]))
    assert not check.allowed and "eu-west-3 is no longer among" in check.reason
    with db.session() as s:  # back in the list: it may launch again
        s.get_one(Client, w["cl"]).allowed_regions = [PARIS, HOME]
    assert (await w["env"].run(w["acts"].check_launch, LaunchCheckRequest(run_id=w["run"]))).allowed

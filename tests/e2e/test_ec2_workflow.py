"""A full run with the `ec2` fleet driver: REST API + worker + the Temporal dev server, moto for STS/EC2 and
SeaweedFS for artifacts and results. moto never boots anything, so the test plays the instance's part: it
uploads the log and result.json the bootstrap script would have written. Also the AWS verify endpoint."""

from __future__ import annotations

import json

import boto3
import pytest

from cli.devstack import wait_for
from core.migrate import upgrade
from core.s3 import s3_client
from tests.support.e2e_stack import Stack, make_stack_settings

pytestmark = pytest.mark.slow  # API and worker as processes (a stack of their own)

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
ROLE = "arn:aws:iam::123456789012:role/orchestrator"


@pytest.fixture(scope="module")
def ec2_stack(tmp_path_factory, temporal_dev_server, s3_settings, moto_endpoint):
    tmp = tmp_path_factory.mktemp("ec2")
    settings = make_stack_settings(
        tmp,
        temporal_dev_server.ports["grpc"],
        s3_settings,
        fleet_driver="ec2",
        aws_endpoint_url=moto_endpoint,
    )
    upgrade(settings)
    st = Stack(settings, tmp, extra_env=AWS_ENV)
    st.start_api()
    st.start_worker()
    yield st
    st.stop()


def ec2_client(moto_endpoint, region: str = "us-east-1"):
    return boto3.client(
        "ec2",
        endpoint_url=moto_endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def live_instances(moto_endpoint, run_id: str, region: str = "us-east-1") -> list[str]:
    resp = ec2_client(moto_endpoint, region).describe_instances(
        Filters=[
            {"Name": "tag:orch:run-id", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    return [i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"]]


def aws_client(st: Stack) -> dict:
    h = st.client()
    cid = st.http.get("/v1/clients", headers=h).json()["items"][0]["id"]
    r = st.http.put(
        f"/v1/clients/{cid}/aws",
        headers=h,
        json={"role_arn": ROLE, "region_default": "us-east-1", "session_name_template": "orch-{run_id}"},
    )
    assert r.status_code == 200, r.text
    h["client_id"] = cid
    return h


def test_verify_endpoint_reports_success(ec2_stack):
    h = aws_client(ec2_stack)
    cid = h.pop("client_id")
    ok = ec2_stack.http.post(f"/v1/clients/{cid}/aws/verify", headers=h)
    assert ok.status_code == 200 and ok.json()["ok"] is True, ok.text
    assert ok.json()["account"] == "123456789012"
    assert "SecretAccessKey" not in ok.text and "testing" not in ok.text


def test_verify_endpoint_reports_failure(api_settings, monkeypatch):
    """AWS unreachable: the endpoint answers 200 with ok=false, the error code and a hint, never a 500."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from tests.support.common import new_client

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    settings = api_settings.model_copy(update={"aws_endpoint_url": "http://127.0.0.1:9"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        cid, h = new_client(api)
        assert (
            api.put(
                f"/v1/clients/{cid}/aws", headers=h, json={"role_arn": ROLE, "region_default": "us-east-1"}
            ).status_code
            == 200
        )
        r = api.post(f"/v1/clients/{cid}/aws/verify", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False and body["error_code"] and body["hint"]


def test_run_on_ec2_succeeds_when_the_instance_reports(ec2_stack, moto_endpoint):
    st = ec2_stack
    h = aws_client(st)
    h.pop("client_id")
    tpl = st.template(h, args={"x": 1})
    job = st.submit(h, tpl)
    run = st.wait_status(h, job["run_id"], "RUNNING", timeout=60)
    ref = run["fleet"]["ref"]
    assert run["fleet"]["driver"] == "ec2" and ref["instance_ids"]
    assert run["region"] == ref["region"] == "us-east-1"  # the plan's region, recorded on the run
    assert live_instances(moto_endpoint, job["run_id"]) == ref["instance_ids"]
    tags = ec2_client(moto_endpoint).describe_instances(InstanceIds=ref["instance_ids"])
    inst = tags["Reservations"][0]["Instances"][0]
    tagmap = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    assert tagmap["orch:run-id"] == job["run_id"] and tagmap["orch:attempt"] == "1"
    # play the instance: the bootstrap uploads the log, then result.json
    s3 = s3_client(st.settings)
    s3.put_object(Bucket=st.settings.s3_bucket, Key=ref["log_key"], Body=b"hello from the instance\n")
    s3.put_object(
        Bucket=st.settings.s3_bucket,
        Key=ref["result_key"],
        Body=json.dumps({"phase": "app", "exit_code": 0}).encode(),
    )
    run = st.wait_status(h, job["run_id"], {"SUCCEEDED", "FAILED"}, timeout=60)
    assert run["status"] == "SUCCEEDED" and run["exit_code"] == 0
    wait_for(
        lambda: live_instances(moto_endpoint, job["run_id"]) == [], 30, "the run's instances to terminate"
    )
    logs = st.http.get(f"/v1/runs/{job['run_id']}/logs", headers=h).json()["text"]
    assert "hello from the instance" in logs


def test_cancel_on_ec2_terminates_instances(ec2_stack, moto_endpoint):
    st = ec2_stack
    h = aws_client(st)
    h.pop("client_id")
    job = st.submit(h, st.template(h))
    st.wait_status(h, job["run_id"], "RUNNING", timeout=60)
    assert live_instances(moto_endpoint, job["run_id"])
    assert st.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h).status_code == 202
    st.wait_status(h, job["run_id"], "CANCELLED", timeout=60)
    assert live_instances(moto_endpoint, job["run_id"]) == []


def test_a_carbon_only_job_allowed_in_frankfurt_and_paris_launches_in_paris(ec2_stack, moto_endpoint):
    """The planner chooses the region (issue 14): the home region is eu-central-1 (Germany's grid), Paris's
    is far cleaner, the job weighs only carbon: the run is planned, recorded and launched in eu-west-3,
    nothing runs in eu-central-1, and cancel leaves nothing running in either."""
    st = ec2_stack
    h = st.client()
    cid = st.http.get("/v1/clients", headers=h).json()["items"][0]["id"]
    home, paris = "eu-central-1", "eu-west-3"
    aws = {"role_arn": ROLE, "region_default": home, "allowed_regions": [home, paris]}
    assert st.http.put(f"/v1/clients/{cid}/aws", headers=h, json=aws).status_code == 200
    job = st.submit(h, st.template(h), weights={"carbon": 1.0, "risk": 0.0, "slack": 0.0})
    run = st.wait_status(h, job["run_id"], "RUNNING", timeout=60)
    assert run["region"] == paris and run["fleet"]["ref"]["region"] == paris, run
    assert run["plan"]["home_region"] == home and f"in {paris}" in run["plan"]["rationale"]
    assert live_instances(moto_endpoint, job["run_id"], paris) == run["fleet"]["ref"]["instance_ids"]
    assert live_instances(moto_endpoint, job["run_id"], home) == []
    assert st.http.post(f"/v1/runs/{job['run_id']}/cancel", headers=h).status_code == 202
    st.wait_status(h, job["run_id"], "CANCELLED", timeout=60)
    assert live_instances(moto_endpoint, job["run_id"], paris) == []
    assert live_instances(moto_endpoint, job["run_id"], home) == []

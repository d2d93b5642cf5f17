"""STS AssumeRole, the credential cache and verify_role, against moto's standalone server."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import boto3
import pytest

from cli.devstack import Server, free_port, start_moto
from core.aws import AssumedCredentials, assume_role, client, hint_for, verify_role
from fleets.base import AwsAccess
from tests.support.common import make_settings

EXTERNAL_ID = "ext-7d1f0c2b9a8e4f35b6c1d2e3"
ACCESS = AwsAccess(
    role_arn="arn:aws:iam::123456789012:role/OrchestratorAccess",
    external_id=EXTERNAL_ID,
    session_name="orch-client_1",
    region="us-east-1",
)


@pytest.fixture
def settings(tmp_path, moto_endpoint, aws_env):  # noqa: F811
    return make_settings(tmp_path, aws_endpoint_url=moto_endpoint)


def with_extra(settings, **extra):
    """The same Settings with some fields changed."""
    return settings.model_copy(update=extra)


def test_assume_role_and_cache(settings):
    a = assume_role(ACCESS, settings)
    assert isinstance(a, AssumedCredentials)
    assert a.assumed_role_arn == "arn:aws:sts::123456789012:assumed-role/OrchestratorAccess/orch-client_1"
    assert assume_role(ACCESS, settings) is a  # cached
    assert assume_role(ACCESS, settings, use_cache=False) is not a
    other = AwsAccess(**{**ACCESS.__dict__, "session_name": "orch-client_2"})
    assert assume_role(other, settings) is not assume_role(ACCESS, settings)


def test_credentials_refreshed_shortly_before_expiry(settings):
    # a refresh margin longer than the session means "always about to expire"
    s = with_extra(settings, aws_credential_refresh_margin_sec=4000, aws_session_duration_sec=3600)
    a = assume_role(ACCESS, s)
    b = assume_role(ACCESS, s)
    assert a is not b and a.access_key_id != b.access_key_id


def test_secrets_never_in_repr_or_logs(settings, caplog):
    caplog.set_level(logging.DEBUG, logger="core.aws")
    creds = assume_role(ACCESS, settings, use_cache=False)
    text = repr(creds) + caplog.text
    for secret in (creds.secret_access_key, creds.session_token, creds.access_key_id, EXTERNAL_ID):
        assert secret not in text
    assert "OrchestratorAccess" in caplog.text  # the role is logged, its secrets are not


def test_client_acts_as_the_role(settings):
    ec2 = client("ec2", ACCESS, settings)
    assert ec2.meta.region_name == "us-east-1"
    ident = client("sts", ACCESS, settings).get_caller_identity()
    assert ident["Arn"].endswith("assumed-role/OrchestratorAccess/orch-client_1")


def test_malformed_input_refused_before_calling_aws(settings):
    bad = AwsAccess(**{**ACCESS.__dict__, "role_arn": "arn:aws:iam::12345:user/bob"})
    with pytest.raises(ValueError, match="role_arn"):
        assume_role(bad, settings)
    bad = AwsAccess(**{**ACCESS.__dict__, "session_name": "has spaces!"})
    with pytest.raises(ValueError, match="session name"):
        assume_role(bad, settings)


def test_verify_role_ok(settings):
    out = verify_role(ACCESS, settings)
    assert out == {
        "ok": True,
        "account": "123456789012",
        "arn": "arn:aws:sts::123456789012:assumed-role/OrchestratorAccess/orch-client_1",
    }


def test_verify_role_malformed_arn(settings):
    out = verify_role(AwsAccess(**{**ACCESS.__dict__, "role_arn": "arn:aws:iam::abc:role/x"}), settings)
    assert out["ok"] is False and out["error_code"] == "ValidationError"
    assert "arn:aws:iam::123456789012:role/name" in out["hint"]


def test_verify_role_unreachable_endpoint(tmp_path, aws_env):  # noqa: F811
    s = make_settings(tmp_path, aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    out = verify_role(ACCESS, s)
    assert out["ok"] is False and out["error_code"] == "EndpointConnectionError"
    assert "Could not reach" in out["hint"]
    assert "testing" not in str(out)


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """A second moto server that enforces IAM: an orchestrator user without sts:AssumeRole rights."""
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "2"  # the two IAM calls below run before auth kicks in
    try:
        server: Server = start_moto(free_port(), tmp_path_factory.mktemp("moto-auth") / "moto.log")
    finally:
        os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    endpoint = f"http://127.0.0.1:{server.ports['http']}"
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam.create_user(UserName="orchestrator")
    key = iam.create_access_key(UserName="orchestrator")["AccessKey"]
    yield endpoint, {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    server.stop()


def test_verify_role_access_denied_with_hint(tmp_path, aws_env, moto_with_auth, monkeypatch):  # noqa: F811
    endpoint, keys = moto_with_auth
    for k, v in keys.items():
        monkeypatch.setenv(k, v)
    out = verify_role(ACCESS, make_settings(tmp_path, aws_endpoint_url=endpoint))
    assert out["ok"] is False and out["error_code"] == "AccessDenied"
    assert "not authorized to perform: sts:AssumeRole" in out["message"]
    assert "trust policy" in out["hint"] and "sts:ExternalId" in out["hint"]
    assert "arn:aws:iam::123456789012:user/orchestrator" in out["hint"]  # who must be trusted
    assert keys["AWS_SECRET_ACCESS_KEY"] not in str(out)


def test_hints():
    assert "operator" in hint_for("InvalidClientTokenId")
    assert "docs/aws.md" in hint_for("SomethingNew")
    assert "permission policy" in hint_for("UnauthorizedOperation", stage="permissions")
    assert "activate" in hint_for("RegionDisabledException")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"role_arn": "arn:aws:iam::12345:role/x"}, "role_arn must look like"),
        ({"session_name": "a b"}, "session name must be 2-64 characters"),
        ({"external_id": "has space"}, "external ID must be 2-1224 characters"),
        ({"region": ""}, "no AWS region given"),
    ],
)
def test_check_access_refuses_what_aws_would_with_the_api_messages(change, message):
    """core.aws checks with core.aws_validation's rules and messages (one home for both)."""
    from core import aws_validation
    from core.aws import check_access

    check_access(ACCESS)  # the valid one passes
    with pytest.raises(ValueError, match=message) as exc:
        check_access(AwsAccess(**{**ACCESS.__dict__, **change}))
    if "role_arn" in change:  # the API's check says the same
        with pytest.raises(ValueError) as api_exc:
            aws_validation.check_role_arn(change["role_arn"])
        assert str(api_exc.value) == str(exc.value)

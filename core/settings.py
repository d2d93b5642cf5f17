"""All configuration in one pydantic-settings class (env prefix ``ORCH_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCH_", env_file=None, extra="ignore")

    env: str = Field("dev", description="dev | test | prod; prod refuses unsafe defaults")
    data_dir: Path = Field(Path(".data"), description="Where the embedded stack keeps its state")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    admin_api_key: str | None = Field(None, description="Key allowed to create clients")
    secrets_key: str | None = Field(
        None,
        description="Fernet key(s), comma-separated, the first encrypts: secrets stored for later use "
        "(webhook signing secrets) are encrypted with it (core/secretbox.py). Default in dev and test: "
        "<data_dir>/secrets_key, created once; required when ORCH_ENV=prod",
    )

    # Database
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")

    # API robustness (database timeouts, pool, input limits, body size)
    db_lock_timeout_sec: float = Field(
        5.0, description="PostgreSQL lock_timeout: a row-lock wait longer is a 503"
    )
    db_statement_timeout_sec: float = Field(30.0, description="PostgreSQL statement_timeout")
    db_idle_in_transaction_timeout_sec: float = Field(
        60.0, description="PostgreSQL idle_in_transaction_session_timeout"
    )
    db_pool_size: int = Field(20, description="PostgreSQL connections kept open (>= API threadpool in use)")
    db_max_overflow: int = Field(20, description="Extra PostgreSQL connections under bursts")
    db_pool_timeout_sec: float = Field(10.0, description="Wait for a pooled connection, then answer 503")
    sqlite_busy_timeout_sec: float = Field(10.0, description="SQLite: wait this long for the write lock")
    db_retry_after_sec: int = Field(2, description="Retry-After of a 503 after a database lock timeout")
    auth_cache_ttl_sec: float = Field(
        5.0,
        description="An API process reuses a client-key lookup this long (0: look up every request); a "
        "suspension, reactivation, key rotation or AWS-settings change made through another API process "
        "reaches this one within this bound (through this process: at once)",
    )
    max_window_days: int = Field(
        31, description="Longest earliest_start..latest_finish window (jobs, preview)"
    )
    chart_renders_per_client: int = Field(
        2,
        ge=1,
        description="SVG charts (preview, carbon report) one client may have rendering at once in one API "
        "process; one more is refused at once with 429 and Retry-After",
    )
    chart_renders_total: int = Field(
        4,
        ge=1,
        description="SVG charts rendering at once in one API process, all clients together; one more is "
        "refused at once with 503 and Retry-After (the rest of the API keeps its threads)",
    )
    max_schedule_ahead_days: int = Field(
        90, description="How far ahead intended_time / earliest_start may lie"
    )
    max_json_body_bytes: int = Field(
        1024 * 1024, description="Size limit of a request body other than uploads"
    )

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "orchestrator"
    temporal_ui_port: int = 8233
    temporal_api_key: str | None = None
    temporal_tls: bool = False

    # Worker
    worker_shutdown_grace_sec: float = 30.0
    worker_max_activities: int = 200
    worker_threads: int = Field(32, description="Threads for activities' blocking DB and fleet-driver calls")
    worker_metrics_port: int | None = Field(None, description="Temporal SDK Prometheus metrics of the worker")
    worker_metrics_host: str = Field(
        "127.0.0.1", description="Bind address of the worker's metrics (0.0.0.0 in containers)"
    )
    # Maintenance loop (workflows/maintenance.py): reconciler of stranded runs, and other sweeps
    maintenance_enabled: bool = Field(True, description="Workers start the maintenance workflow")
    maintenance_interval_sec: float = Field(60.0, description="Period of the maintenance loop")
    reconcile_grace_sec: float = Field(
        30.0, description="A run PENDING this long without a workflow is started by the reconciler"
    )
    reconcile_batch: int = Field(200, description="Runs examined per reconciler pass (rotating cursor)")
    recurring_min_interval_sec: int = Field(
        60, ge=1, description="Shortest `interval` a recurring job may have (tests lower it to seconds)"
    )
    max_recurring_jobs_per_client: int = Field(
        100, ge=1, description="Recurring jobs (not deleted) a client may have; one more is a 409"
    )

    # S3 artifact store
    s3_endpoint_url: str | None = Field("http://127.0.0.1:8333", description="None = AWS S3")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = "orchdev"
    s3_secret_access_key: str | None = "orchdev-secret"
    s3_bucket: str = "orchestrator-artifacts"
    seaweed_master_port: int = 9333
    seaweed_volume_port: int = 8080
    seaweed_filer_port: int = 8888

    # Artifacts
    max_artifact_bytes: int = Field(200 * 1024 * 1024, description="Upload size limit (bytes)")
    max_unzipped_bytes: int = Field(1024 * 1024 * 1024, description="Zip-bomb guard: total expanded size")
    max_zip_ratio: float = Field(
        200.0, description="Zip-bomb guard: max compression ratio, per entry and of the whole archive"
    )
    max_zip_entries: int = 10_000
    max_zip_name_bytes: int = Field(1024, description="Longest entry path in a zip (UTF-8 bytes)")
    max_zip_depth: int = Field(32, description="Deepest directory nesting of a zip entry")
    max_concurrent_uploads: int = Field(
        4, description="Uploads processed at once per API process; more answer 429 with Retry-After"
    )
    s3_connect_timeout_sec: float = Field(3.0, description="S3 connect timeout (fail fast when it is down)")
    s3_read_timeout_sec: float = Field(60.0, description="S3 read timeout")
    s3_max_attempts: int = Field(3, description="S3 attempts per call, first included")
    s3_part_size_bytes: int = Field(8 * 1024 * 1024, description="Multipart part size of artifact uploads")
    artifact_sweep_grace_sec: int = Field(
        3600, description="Sweeper: leaves orphan objects and incomplete multipart uploads younger than this"
    )
    artifact_sweep_interval_sec: int = Field(
        3600, description="How often the maintenance loop sweeps the artifact store (it lists the bucket)"
    )

    # Fleets
    fleet_driver: str = Field("local", description="local | ec2")
    cancel_grace_sec: float = Field(10.0, description="SIGTERM -> SIGKILL grace period")
    monitor_poll_sec: float = Field(5.0, description="Fleet poll interval")
    aws_endpoint_url: str | None = Field(None, description="STS/EC2 endpoint override (moto in tests)")
    aws_session_duration_sec: int = Field(3600, description="AssumeRole session length")
    aws_credential_refresh_margin_sec: int = Field(300, description="Re-assume this long before expiry")
    ec2_presign_ttl_sec: int = Field(
        604800, description="Lifetime of the instance's presigned URLs (max 7 days)"
    )
    ec2_log_upload_interval_sec: int = 30
    ec2_terminate_timeout_sec: int = 300
    ec2_missing_instance_grace_sec: int = 600
    local_start_timeout_sec: int = 30
    # local fleet isolation and clean-up (fleets/local.py; README "What `local` isolates")
    local_runs_dir: Path | None = Field(
        None,
        description="local: attempts' directories (default data_dir/runs; a dir in the system temp dir when "
        "the worker is root and the data dir's parents are closed to other users)",
    )
    local_run_as_run_uid: bool = Field(
        True, description="When the worker is root, run each attempt as its own unprivileged uid/gid"
    )
    local_run_uid_base: int | None = Field(
        None,
        ge=1000,
        description="First uid/gid of the per-run range; default: 2000000000 + a multiple of "
        "local_run_uid_count picked by a hash of the data dir (two stacks on one host: different ranges)",
    )
    local_run_uid_count: int = Field(1_000_000, description="Size of the per-run uid/gid range")
    local_app_path: str = Field("/usr/local/bin:/usr/bin:/bin", description="PATH the app gets")
    local_app_network: Literal["none", "host"] = Field(
        "none",
        description="local, worker is root: `none` runs each attempt in its own network namespace with only "
        "a loopback interface (it reaches no server of the stack and no other host); `host` shares the "
        "worker's network (the app reaches the API, Temporal, SeaweedFS and the internet)",
    )
    local_run_retention_hours: float = Field(
        72.0, description="Finished attempts' run directories are deleted after this long"
    )

    # Carbon providers (read only by carbon/; adding a provider touches only carbon/ and this block)
    carbon_provider: str = Field(
        "auto",
        description="auto | embedded | csv | electricitymaps | watttime | carbon-aware-sdk | "
        "uk-carbon-intensity | energy-charts; auto = a configured keyed provider, else a keyless public "
        "forecast for the region, else embedded",
    )
    electricitymaps_api_key: SecretStr | None = None
    electricitymaps_url: str = "https://api.electricitymap.org"
    watttime_username: str | None = None
    watttime_password: SecretStr | None = None
    watttime_url: str = "https://api.watttime.org"
    carbon_aware_sdk_url: str | None = Field(
        None, description="Base URL of a self-hosted GSF Carbon Aware WebAPI"
    )
    electricitymaps_zones: dict[str, str] = Field(
        default_factory=dict, description="AWS region -> zone overrides"
    )
    watttime_regions: dict[str, str] = Field(
        default_factory=dict, description="AWS region -> WattTime region"
    )
    carbon_aware_sdk_locations: dict[str, str] = Field(
        default_factory=dict, description="AWS region -> location"
    )
    uk_carbon_intensity_url: str = Field(
        "https://api.carbonintensity.org.uk", description="National Grid ESO Carbon Intensity API (no key)"
    )
    uk_carbon_intensity_regions: dict[str, int | None] = Field(
        default_factory=lambda: dict[str, int | None]({"eu-west-2": None}),
        description="AWS region -> GB region id (null = national, 13 = London)",
    )
    energy_charts_url: str = Field(
        "https://api.energy-charts.info", description="Fraunhofer ISE Energy-Charts API (no key)"
    )
    energy_charts_countries: dict[str, str] = Field(
        default_factory=lambda: {
            "eu-central-1": "de",
            "eu-west-3": "fr",
            "eu-south-1": "it",
            "eu-south-2": "es",
            "eu-north-1": "se",
            "eu-central-2": "ch",
            "eu-west-1": "ie",
        },
        description="AWS region -> Energy-Charts country code",
    )
    carbon_cache_ttl_sec: int = Field(900, description="How long a provider forecast is reused (DB cache)")
    carbon_http_timeout_sec: float = Field(3.0, description="Per-request timeout of a carbon provider")
    carbon_horizon_hours: int = 72
    carbon_actuals_days: int = Field(7, description="Days of recent actuals to fetch")
    carbon_splice_sigma_pct: float = Field(
        30.0, description="Relative 1-sigma error (%) of the profile that continues a live forecast"
    )
    carbon_csv_path: str | None = Field(None, description="csv provider: file of `timestamp, g/kWh`")
    carbon_csv_tz: str | None = Field(
        None, description="csv provider: IANA zone of timestamps without an offset (else they are refused)"
    )
    carbon_csv_max_gap_min: int = Field(180, description="csv: longest gap interpolated; longer is refused")

    # Scheduling
    forecast_step_min: int = 15
    # Honest scoring (README "How a start is chosen"): when the planner may leave the baseline start
    min_saving_pct: float = Field(
        3.0, ge=0, le=100, description="Least expected saving (%) for a start other than the baseline"
    )
    min_saving_prob: float = Field(
        0.8, ge=0, le=1, description="Least P(saving > 0) under the forecast's uncertainty to move"
    )
    max_risk_pts_per_saving_pct: float = Field(
        1.0, ge=0, description="Most points of added deadline-miss risk per 1 % of expected saving"
    )
    carbon_default_rel_sigma: float = Field(
        0.10, ge=0, le=10, description="Forecast error (share of the value) for a series without sigma"
    )
    spot_max_prob_neutral: float = Field(
        0.05, ge=0, le=1, description="Highest spot interruption probability NEUTRAL accepts"
    )
    spot_max_prob_aggressive: float = Field(
        0.2, ge=0, le=1, description="Highest spot interruption probability AGGRESSIVE accepts"
    )
    replan_interval_sec: int = 3600
    # Webhooks (issue 19): URL rules and delivery retries (README "Webhooks")
    webhook_allow_http_loopback: bool | None = Field(
        None,
        description="Allow http://127.0.0.1 and http://[::1] webhook URLs (default: on in dev and test, "
        "off in prod)",
    )
    webhook_timeout_sec: float = Field(10.0, gt=0, le=60, description="Timeout of one webhook POST")
    webhook_retry_initial_sec: float = Field(5.0, ge=0.1, description="First delivery retry after this")
    webhook_retry_backoff: float = Field(2.0, ge=1, description="Each delivery retry waits this times longer")
    webhook_retry_max_interval_sec: float = Field(600.0, ge=0.1, description="Longest wait between retries")
    webhook_max_attempts: int = Field(12, ge=1, description="Delivery attempts before a delivery is failed")
    default_runtime_sec: int = Field(
        3600, description="Runtime assumed with no history and no expected_runtime_sec"
    )
    start_tolerance_sec: int = Field(
        3600,
        description="ONE_TIME with no deadline: EXPIRED if it cannot start "
        "within this long after intended_time",
    )
    past_tolerance_sec: int = Field(300, description="How far in the past an intended_time may lie")
    prediction_min_samples: int = 3

    @field_validator(
        "s3_endpoint_url",
        "aws_endpoint_url",
        "admin_api_key",
        "secrets_key",
        "database_url",
        "temporal_api_key",
        "s3_access_key_id",
        "s3_secret_access_key",
        "worker_metrics_port",
        "webhook_allow_http_loopback",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v):
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _refuse_unsafe_prod(self) -> Settings:
        if self.env == "prod":
            if not self.admin_api_key or len(self.admin_api_key) < 32:
                raise ValueError("ORCH_ADMIN_API_KEY (>= 32 chars) is required when ORCH_ENV=prod")
            if self.s3_secret_access_key == "orchdev-secret":
                raise ValueError("the dev S3 secret must not be used when ORCH_ENV=prod")
            if not self.secrets_key:
                raise ValueError(
                    "ORCH_SECRETS_KEY (a Fernet key: python3 -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())') is required when ORCH_ENV=prod"
                )
        return self

    @property
    def webhook_loopback_allowed(self) -> bool:
        """ORCH_WEBHOOK_ALLOW_HTTP_LOOPBACK, by default on in dev and test, off in prod."""
        if self.webhook_allow_http_loopback is not None:
            return self.webhook_allow_http_loopback
        return self.env != "prod"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'orchestrator.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

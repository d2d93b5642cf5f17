"""templates as real resources (issue 19): template versions (PATCH makes a new one; runs keep theirs),
retired templates (DELETE), the version a job and run were planned with, and the run a job reruns.

Every existing template becomes version 1 (its row copied into job_template_versions); existing jobs and
runs reference version 1.

Revision ID: 0008_template_versions
Revises: 0006_plan_audit
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = "0008_template_versions"
down_revision = "0006_plan_audit"
branch_labels = None
depends_on = None

FIELDS = (
    "name",
    "app_artifact_id",
    "default_args",
    "data_uri",
    "fleet_template_id",
    "expected_runtime_sec",
    "max_runtime_sec",
    "region",
    "regions",
    "data_region",
)


def upgrade() -> None:
    with op.batch_alter_table("job_templates") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_at", models.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retired_at", models.db.UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "job_template_versions",
        sa.Column("job_template_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("app_artifact_id", sa.String(length=40), nullable=False),
        sa.Column("default_args", sa.JSON(), nullable=False),
        sa.Column("data_uri", sa.String(length=2048), nullable=True),
        sa.Column("fleet_template_id", sa.String(length=64), nullable=False),
        sa.Column("expected_runtime_sec", sa.Integer(), nullable=True),
        sa.Column("max_runtime_sec", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("regions", sa.JSON(), nullable=True),
        sa.Column("data_region", sa.String(length=32), nullable=True),
        sa.Column("created_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_template_id"], ["job_templates.id"]),
        sa.ForeignKeyConstraint(["app_artifact_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("job_template_id", "version"),
    )
    cols = ", ".join(FIELDS)
    op.execute(
        f"INSERT INTO job_template_versions (job_template_id, version, {cols}, created_at) "
        f"SELECT id, 1, {cols}, created_at FROM job_templates"
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("job_template_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rerun_of", sa.String(length=40), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("job_template_version", sa.Integer(), nullable=True))
    op.execute("UPDATE jobs SET job_template_version = 1")
    op.execute("UPDATE runs SET job_template_version = 1")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("job_template_version")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("rerun_of")
        batch.drop_column("job_template_version")
    op.drop_table("job_template_versions")
    with op.batch_alter_table("job_templates") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("updated_at")
        batch.drop_column("version")

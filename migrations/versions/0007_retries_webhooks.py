"""retries and webhooks (issue 19): retry policies on templates and jobs, the runs' attempt log, webhook
endpoints and their deliveries

Revision ID: 0007_retries_webhooks
Revises: 0008_template_versions
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = "0007_retries_webhooks"
down_revision = "0008_template_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("job_template_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_policy", sa.JSON(), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_log", sa.JSON(), nullable=True))
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("client_id", sa.String(length=40), sa.ForeignKey("clients.id"), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("enabled", sa.Integer(), nullable=False),
        sa.Column("created_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.db.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_endpoints_client_id", "webhook_endpoints", ["client_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "endpoint_id", sa.String(length=40), sa.ForeignKey("webhook_endpoints.id"), nullable=False
        ),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("redeliveries", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", models.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_endpoint_id", "webhook_deliveries", ["endpoint_id"])
    op.create_index("ix_webhook_deliveries_client_id", "webhook_deliveries", ["client_id"])
    op.create_index(
        "uq_delivery_endpoint_event", "webhook_deliveries", ["endpoint_id", "event_id"], unique=True
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("attempt_log")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("retry_policy")
    with op.batch_alter_table("job_template_versions", schema=None) as batch_op:
        batch_op.drop_column("retry_policy")
    with op.batch_alter_table("job_templates", schema=None) as batch_op:
        batch_op.drop_column("retry_policy")

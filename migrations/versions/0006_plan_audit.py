"""plan audit records and forecast/measured pairs (issue 18): what each plan was decided from, and the
hourly pairs of a live forecast with the intensity measured for it

Revision ID: 0006_plan_audit
Revises: 0005_actuals
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = "0006_plan_audit"
down_revision = "0005_actuals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_audits",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("decided_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("adopted", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_plan_audits_run_id", "plan_audits", ["run_id"], unique=False)
    op.create_table(
        "carbon_forecast_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("signal", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lead_h", sa.Float(), nullable=False),
        sa.Column("forecast", sa.Float(), nullable=False),
        sa.Column("actual", sa.Float(), nullable=False),
        sa.Column("stated_sigma", sa.Float(), nullable=False),
        sa.Column("recorded_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_forecast_pair", "carbon_forecast_pairs", ["run_id", "provider", "zone", "at"], unique=True
    )
    op.create_index("ix_forecast_pair_key", "carbon_forecast_pairs", ["provider", "zone", "id"])


def downgrade() -> None:
    op.drop_index("ix_forecast_pair_key", table_name="carbon_forecast_pairs")
    op.drop_index("uq_forecast_pair", table_name="carbon_forecast_pairs")
    op.drop_table("carbon_forecast_pairs")
    op.drop_index("ix_plan_audits_run_id", table_name="plan_audits")
    op.drop_table("plan_audits")

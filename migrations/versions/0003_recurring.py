"""recurring jobs (issue 13): recurring_jobs table; jobs/runs carry recurring_job_id, jobs the nominal time

Revision ID: 0003_recurring
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = "0003_recurring"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recurring_jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("job_template_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("interval", sa.String(length=64), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("margin_before", sa.String(length=64), nullable=False),
        sa.Column("margin_after", sa.String(length=64), nullable=False),
        sa.Column("deadline", sa.String(length=64), nullable=True),
        sa.Column("risk_mode", sa.String(length=16), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("start_at", models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_at", models.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("catchup_window", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", models.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.ForeignKeyConstraint(["job_template_id"], ["job_templates.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id"),
    )
    with op.batch_alter_table("recurring_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_recurring_jobs_client_id", ["client_id"], unique=False)
        batch_op.create_index("ix_recurring_jobs_job_template_id", ["job_template_id"], unique=False)
        batch_op.create_index("ix_recurring_client_status", ["client_id", "status"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recurring_job_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("nominal_time", models.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_jobs_recurring_job_id", ["recurring_job_id"], unique=False)
        batch_op.create_index("uq_job_recurring_nominal", ["recurring_job_id", "nominal_time"], unique=True)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recurring_job_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_runs_recurring_job_id", ["recurring_job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_recurring_job_id")
        batch_op.drop_column("recurring_job_id")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_job_recurring_nominal")
        batch_op.drop_index("ix_jobs_recurring_job_id")
        batch_op.drop_column("nominal_time")
        batch_op.drop_column("recurring_job_id")
    op.drop_table("recurring_jobs")

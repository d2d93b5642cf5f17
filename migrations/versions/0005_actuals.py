"""measured carbon after a run (issue 13): the run's and its baseline's measured gCO2e, the mean measured
intensity, who measured it, and when it was last looked for (with why not)

Revision ID: 0005_actuals
Revises: 0003_recurring (re-chained after 0004_regions when both are merged)
"""

import sqlalchemy as sa
from alembic import op

import models.db

revision = "0005_actuals"
down_revision = "0004_regions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carbon_actual_g", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("carbon_actual_baseline_g", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("carbon_actual_intensity", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("carbon_actual_source", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("carbon_actual_note", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("carbon_actual_checked_at", models.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name in (
            "carbon_actual_checked_at",
            "carbon_actual_note",
            "carbon_actual_source",
            "carbon_actual_intensity",
            "carbon_actual_baseline_g",
            "carbon_actual_g",
        ):
            batch_op.drop_column(name)

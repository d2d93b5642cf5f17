"""choose the AWS region (issue 14): clients' allowed regions and per-region launch settings, templates'
and jobs' region lists, the template's data region, the run's chosen region (all nullable: old rows keep
today's behaviour)

Revision ID: 0004_regions
Revises: 0003_recurring
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_regions"
down_revision = "0003_recurring"
branch_labels = None
depends_on = None

COLUMNS = {
    "clients": [("allowed_regions", sa.JSON()), ("region_settings", sa.JSON())],
    "job_templates": [("regions", sa.JSON()), ("data_region", sa.String(length=32))],
    "jobs": [("regions", sa.JSON())],
    "runs": [("region", sa.String(length=32))],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, type_ in columns:
                batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(columns):
                batch.drop_column(name)

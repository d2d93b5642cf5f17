"""instance types in canonical lower case (AWS refuses "M5.Large")

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("job_templates", "runs"):
        op.execute(f"UPDATE {table} SET fleet_template_id = lower(trim(fleet_template_id))")


def downgrade() -> None:
    pass  # the original spelling is not kept; lower case is what AWS accepts

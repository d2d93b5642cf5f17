"""webhook signing secrets encrypted at rest: the column holds a Fernet token (``enc:v1:...``, about 170
characters for a whsec_ secret), so it widens from 128 to 512 (core/secretbox.py). Rows written before keep
their value and are read as they are.

Revision ID: 0009_webhook_secrets_at_rest
Revises: 0007_retries_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_webhook_secrets_at_rest"
down_revision = "0007_retries_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.String(length=128), type_=sa.String(length=512), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.String(length=512), type_=sa.String(length=128), existing_nullable=False
        )

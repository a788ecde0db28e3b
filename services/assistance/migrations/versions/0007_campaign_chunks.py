"""回头看 campaigns generate their tasks a chunk at a time: status, households selected,
and the launcher's regions the chunks select within.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaigns", sa.Column("status", sa.String(20), nullable=False, server_default="ready")
    )
    op.add_column(
        "campaigns", sa.Column("selected", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column(
        "campaigns",
        sa.Column("scope_regions", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.execute(
        "UPDATE campaigns c SET selected = (SELECT count(*) FROM tasks t WHERE t.campaign_id = c.id)"
    )


def downgrade() -> None:
    for column in ("scope_regions", "selected", "status"):
        op.drop_column("campaigns", column)

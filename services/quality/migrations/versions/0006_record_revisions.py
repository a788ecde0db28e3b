"""quality_records: datasync's revision of each record and a void flag, so a correction
(更正) replaces a record only when newer and a void (作废) leaves a tombstone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Constant defaults: no table rewrite on PostgreSQL 11+.
    op.add_column(
        "quality_records",
        sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "quality_records",
        sa.Column("voided", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("quality_records", "voided")
    op.drop_column("quality_records", "revision")

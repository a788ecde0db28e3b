"""数据质量: the quality service's sweep summaries, for the quarterly report's section.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_quality_sweeps",
        sa.Column("sweep_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("region_prefix", sa.String(12), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("sweep_id"),
    )
    op.create_index(
        "ix_data_quality_sweeps_region_finished",
        "data_quality_sweeps",
        ["region_prefix", "finished_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_data_quality_sweeps_region_finished", table_name="data_quality_sweeps")
    op.drop_table("data_quality_sweeps")

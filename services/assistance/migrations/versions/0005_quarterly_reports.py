"""季度动态监测: risk-level read model and closed quarterly reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_levels",
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("household_id"),
    )
    op.create_index("ix_risk_levels_region_code", "risk_levels", ["region_code"])
    op.create_table(
        "quarterly_reports",
        sa.Column("quarter", sa.String(6), nullable=False),
        sa.Column("report", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("closed_by", sa.String(100), nullable=False),
        sa.Column("closed_client", sa.String(100), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("quarter"),
    )


def downgrade() -> None:
    op.drop_table("quarterly_reports")
    op.drop_index("ix_risk_levels_region_code", table_name="risk_levels")
    op.drop_table("risk_levels")

"""季度动态监测上报: guarantee and income changes heard from registry, and closed returns

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "household_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("item", sa.String(30), nullable=False),
        sa.Column("before", JSONB(), nullable=True),
        sa.Column("after", JSONB(), nullable=True),
        sa.Column("per_capita", sa.Float(), nullable=True),
        sa.Column("changed_on", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("household_id", "region_code"):
        op.create_index(f"ix_household_changes_{column}", "household_changes", [column])
    op.create_index("ix_household_changes_changed_on", "household_changes", ["changed_on"])
    op.create_table(
        "province_returns",
        sa.Column("quarter", sa.String(6), nullable=False),
        sa.Column("body", JSONB(), nullable=False),
        sa.ForeignKeyConstraint(["quarter"], ["quarterly_reports.quarter"]),
        sa.PrimaryKeyConstraint("quarter"),
    )


def downgrade() -> None:
    op.drop_table("province_returns")
    op.drop_table("household_changes")

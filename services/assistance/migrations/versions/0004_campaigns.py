"""回头看 campaigns: campaigns table, review tasks linked to their campaign

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(80), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("region_prefix", sa.String(12), nullable=False),
        sa.Column("household_types", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("monitoring_statuses", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("launched_by", sa.String(), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.add_column("tasks", sa.Column("campaign_id", sa.String(36), nullable=True))
    op.create_index(
        "uq_tasks_campaign_household",
        "tasks",
        ["campaign_id", "household_id"],
        unique=True,
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_tasks_campaign_household",
        table_name="tasks",
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.drop_column("tasks", "campaign_id")
    op.drop_table("campaigns")

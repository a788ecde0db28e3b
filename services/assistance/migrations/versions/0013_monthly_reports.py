"""月汇报: each town's monthly report, due once the month ends and stored as signed off

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monthly_reports",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("town_code", sa.String(9), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("report", postgresql.JSONB(), nullable=False),
        sa.Column("signed_off_by", sa.String(100), nullable=True),
        sa.Column("signed_off_client", sa.String(100), nullable=True),
        sa.Column("signed_off_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue_emitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("town_code", "period", name="uq_monthly_reports_town_period"),
        sa.CheckConstraint("status IN ('due', 'signed_off')", name="ck_monthly_reports_status"),
    )
    op.create_index(
        "ix_monthly_reports_due",
        "monthly_reports",
        ["due_on"],
        postgresql_where=sa.text("status = 'due'"),
    )


def downgrade() -> None:
    op.drop_table("monthly_reports")

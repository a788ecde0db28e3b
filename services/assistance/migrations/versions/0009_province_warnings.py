"""省平台预警: the provincial platform's warnings, kept under its own ids

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "province_warnings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("warning_id", sa.String(64), nullable=False),
        sa.Column("system", sa.String(20), nullable=False),
        sa.Column("item", sa.String(30), nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("warned_on", sa.Date(), nullable=False),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("household_number", sa.String(64), nullable=True),
        sa.Column("person_id_hash", sa.String(64), nullable=True),
        sa.Column("person_id_masked", sa.String(18), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("filed_by", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=True),
        sa.Column("region_code", sa.String(12), nullable=True),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("warning_id"),
    )
    for column in ("household_number", "person_id_hash", "household_id", "region_code", "task_id"):
        op.create_index(f"ix_province_warnings_{column}", "province_warnings", [column])
    op.create_index(
        "ix_province_warnings_unmatched",
        "province_warnings",
        ["received_at"],
        postgresql_where=sa.text("household_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("province_warnings")

"""Department files: mapping profiles (versioned), the profile a batch was read with,
row errors as a data officer reads them (code, Chinese message, Excel row, header, value),
and each household's village for region-scoped reading of matched records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
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
        "mapping_profiles",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("columns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("header_row", sa.Integer(), nullable=True),
        sa.Column("header_rows", sa.Integer(), nullable=True),
        sa.Column("sheet", sa.String(length=100), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", "version"),
    )
    op.add_column("feed_batches", sa.Column("profile_version", sa.Integer(), nullable=True))
    op.add_column("rejected_records", sa.Column("code", sa.String(length=40), nullable=True))
    op.add_column("rejected_records", sa.Column("message_zh", sa.Text(), nullable=True))
    op.add_column("rejected_records", sa.Column("line", sa.Integer(), nullable=True))
    op.add_column("rejected_records", sa.Column("column_header", sa.Text(), nullable=True))
    op.add_column("rejected_records", sa.Column("value", sa.Text(), nullable=True))
    op.add_column(
        "household_versions", sa.Column("region_code", sa.String(length=12), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("household_versions", "region_code")
    for column in ("value", "column_header", "line", "message_zh", "code"):
        op.drop_column("rejected_records", column)
    op.drop_column("feed_batches", "profile_version")
    op.drop_table("mapping_profiles")

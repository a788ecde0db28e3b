"""Corrections (更正) and voids (作废) of records: each record's revision and void time,
and the history of every changed record's versions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: no table rewrite on PostgreSQL 11+.
    op.add_column(
        "feed_records",
        sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column("feed_records", sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "feed_record_versions",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=12), nullable=False),
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(length=36), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", "record_id", "revision"),
    )
    # A batch's corrections and voids, listed with its records.
    op.create_index(
        "ix_feed_record_versions_batch", "feed_record_versions", ["source", "batch_id", "idx"]
    )


def downgrade() -> None:
    op.drop_index("ix_feed_record_versions_batch", table_name="feed_record_versions")
    op.drop_table("feed_record_versions")
    op.drop_column("feed_records", "voided_at")
    op.drop_column("feed_records", "revision")

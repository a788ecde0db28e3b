"""线索 (clues): household, public and cadre reports tracked to their outcome

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clues",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=True),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("person_name", sa.String(), nullable=True),
        sa.Column("person_id_hash", sa.String(64), nullable=True),
        sa.Column("person_id_masked", sa.String(18), nullable=True),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("concerns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("reporter_name", sa.String(), nullable=True),
        sa.Column("reporter_phone", sa.String(), nullable=True),
        sa.Column("filed_by", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accept_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("accepted_by", sa.String(), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("outcome_notes", sa.String(), nullable=True),
        sa.Column("outcome_by", sa.String(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_clues_accept_by",
        "clues",
        ["accept_by"],
        unique=False,
        postgresql_where=sa.text("status = 'received'"),
    )
    op.create_index(op.f("ix_clues_filed_by"), "clues", ["filed_by"], unique=False)
    op.create_index(op.f("ix_clues_household_id"), "clues", ["household_id"], unique=False)
    op.create_index(op.f("ix_clues_region_code"), "clues", ["region_code"], unique=False)
    op.create_index(op.f("ix_clues_task_id"), "clues", ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_clues_task_id"), table_name="clues")
    op.drop_index(op.f("ix_clues_region_code"), table_name="clues")
    op.drop_index(op.f("ix_clues_household_id"), table_name="clues")
    op.drop_index(op.f("ix_clues_filed_by"), table_name="clues")
    op.drop_index(
        "ix_clues_accept_by", table_name="clues", postgresql_where=sa.text("status = 'received'")
    )
    op.drop_table("clues")

"""纳入建档立卡核查: checks of people not in the register (enrolment_checks).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrolment_checks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("assignee_type", sa.String(10), nullable=False),
        sa.Column("assignee_code", sa.String(20), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("factors", JSONB(), nullable=False),
        sa.Column("evidence", JSONB(), nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("origin_ref", sa.String(64), nullable=True),
        sa.Column("clue_id", sa.String(36), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by", sa.String(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("verified_by", sa.String(), nullable=True),
        sa.Column("notes", sa.String(), nullable=True),
        sa.Column("checklist", JSONB(), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'done', 'cancelled')", name="ck_enrolment_checks_status"
        ),
    )
    op.create_index(
        "uq_enrolment_checks_active",
        "enrolment_checks",
        ["id_hash"],
        unique=True,
        postgresql_where=sa.text(
            "status = 'open' OR (outcome = 'confirmed' AND household_id IS NULL)"
        ),
    )
    op.create_index("ix_enrolment_checks_region_code", "enrolment_checks", ["region_code"])
    op.create_index("ix_enrolment_checks_clue_id", "enrolment_checks", ["clue_id"])


def downgrade() -> None:
    op.drop_table("enrolment_checks")

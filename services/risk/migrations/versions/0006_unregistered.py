"""People not in the register: their rigid costs and what each was last flagged with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_unregistered_records",
        sa.Column("source", sa.String(20), primary_key=True),
        sa.Column("record_id", sa.String(100), primary_key=True),
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("batch_id", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(
        "ix_risk_unregistered_records_id_hash", "risk_unregistered_records", ["id_hash"]
    )
    op.create_table(
        "risk_unregistered_people",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("flagged_sources", JSONB(), nullable=False),
        sa.Column("factors", JSONB(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column(
            "flagged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("risk_unregistered_people")
    op.drop_table("risk_unregistered_records")

"""risk_records: datasync's revision of each record and a void flag, so a correction
(更正) replaces a record only when newer and a void (作废) leaves a tombstone. The
features index covers live records only.

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

# The columns features._records_json reads, besides the key (as in 0003).
FEATURE_COLUMNS = [
    "source",
    "record_id",
    "amount",
    "id_hash",
    "housing_damaged",
    "kind",
    "status",
    "enrolled",
]


def upgrade() -> None:
    # Constant defaults: no table rewrite on PostgreSQL 11+.
    op.add_column(
        "risk_records",
        sa.Column("revision", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.add_column(
        "risk_records",
        sa.Column("voided", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.drop_index("ix_risk_records_household_features", table_name="risk_records")
    op.create_index(
        "ix_risk_records_household_features",
        "risk_records",
        ["household_id", "occurred_on"],
        postgresql_include=FEATURE_COLUMNS,
        postgresql_where=sa.text("NOT voided"),
    )


def downgrade() -> None:
    op.drop_index("ix_risk_records_household_features", table_name="risk_records")
    op.create_index(
        "ix_risk_records_household_features",
        "risk_records",
        ["household_id", "occurred_on"],
        postgresql_include=FEATURE_COLUMNS,
    )
    op.drop_column("risk_records", "voided")
    op.drop_column("risk_records", "revision")

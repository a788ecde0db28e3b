"""risk_records: the household index carries every column the features read, so a
household's records come from its few index pages (an index-only scan) instead of one
heap page per record. Built from the existing rows; replaces ix_risk_records_household.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns handlers._records_json reads, besides the key.
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
    op.create_index(
        "ix_risk_records_household_features",
        "risk_records",
        ["household_id", "occurred_on"],
        postgresql_include=FEATURE_COLUMNS,
    )
    op.drop_index("ix_risk_records_household", table_name="risk_records")


def downgrade() -> None:
    op.create_index("ix_risk_records_household", "risk_records", ["household_id", "occurred_on"])
    op.drop_index("ix_risk_records_household_features", table_name="risk_records")

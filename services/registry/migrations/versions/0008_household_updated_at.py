"""An index on households' updated_at, for the province's incremental sync
(GET /v1/households?updated_since=).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_household_updated_at", "household", ["updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_household_updated_at", table_name="household")

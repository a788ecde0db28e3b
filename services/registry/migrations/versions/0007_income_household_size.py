"""Each year's income keeps the number of members it was earned by, so a past year's
per-capita income divides by that year's members, not today's. Rows recorded before this
take the household's members as they are now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("income", sa.Column("household_size", sa.SmallInteger()))
    op.execute(
        "UPDATE income i SET household_size = "
        "(SELECT count(*) FROM person p WHERE p.household_id = i.household_id)"
    )


def downgrade() -> None:
    op.drop_column("income", "household_size")

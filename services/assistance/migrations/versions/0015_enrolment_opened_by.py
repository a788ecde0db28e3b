"""纳入建档立卡核查: who opened a check (risk, or whoever turned a clue into it).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("enrolment_checks", sa.Column("opened_by", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("enrolment_checks", "opened_by")

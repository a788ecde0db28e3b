"""Tasks: the county's 集中交由 of pre-checked cases to the insurer (seed 三(三)3).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("handed_over_by", sa.String(), nullable=True))
    op.add_column("tasks", sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True))
    # Cases already pre-checked count as handed over then: their insurer is at work.
    op.execute("UPDATE tasks SET handed_over_at = prechecked_at WHERE prechecked_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("tasks", "handed_over_at")
    op.drop_column("tasks", "handed_over_by")

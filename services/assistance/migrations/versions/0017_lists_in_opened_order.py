"""Lists of tasks and cases are pages in the order they were opened (keyset on opened_at,
id): an index in that order lets PostgreSQL read the page instead of sorting every match.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_opened", "tasks", ["opened_at", "id"])
    op.create_index("ix_cases_opened", "cases", ["opened_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_cases_opened", "cases")
    op.drop_index("ix_tasks_opened", "tasks")

"""A grant to a household that is not a 救助对象 keeps the county's override reason.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("grants", sa.Column("override_reason", sa.String()))


def downgrade() -> None:
    op.drop_column("grants", "override_reason")

"""Income amounts as exact decimals: numeric(14,2) instead of double precision, each
value rounded to the cent it was meant to be (the audit and every sum read them exactly).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("total", "wage", "business", "transfer", "property")


def upgrade() -> None:
    for column in COLUMNS:
        op.alter_column(
            "income",
            column,
            type_=sa.Numeric(14, 2),
            existing_type=sa.Float(),
            existing_nullable=column != "total",
            postgresql_using=f"round({column}::numeric, 2)",
        )


def downgrade() -> None:
    for column in COLUMNS:
        op.alter_column(
            "income",
            column,
            type_=sa.Float(),
            existing_type=sa.Numeric(14, 2),
            existing_nullable=column != "total",
            postgresql_using=f"{column}::double precision",
        )

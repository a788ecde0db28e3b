"""Lighter writes for bulk registration.

- Indexes that every registration paid for and no read uses: `person.id_hash` goes (the
  registry finds people by ID number; other services keep their own id_hash indexes
  from its events), and `history.person_id` covers only the entries that name a person
  (a household's creation does not).
- Outbox rows stay uncompressed up to a page: registry events carry whole household
  snapshots (1.5-3 kB), and compressing them as they are inserted cost more CPU than the
  space saved in a queue the relay empties within seconds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE outbox SET (toast_tuple_target = 8160)")
    op.drop_index("ix_person_id_hash", table_name="person")
    op.drop_index("ix_history_person_id", table_name="history")
    op.create_index(
        "ix_history_person_id",
        "history",
        ["person_id"],
        unique=False,
        postgresql_where=sa.text("person_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_history_person_id", table_name="history")
    op.create_index("ix_history_person_id", "history", ["person_id"], unique=False)
    op.create_index("ix_person_id_hash", "person", ["id_hash"], unique=False)
    op.execute("ALTER TABLE outbox RESET (toast_tuple_target)")

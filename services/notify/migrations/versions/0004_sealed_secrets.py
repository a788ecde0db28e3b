"""Webhook subscription secrets are stored sealed (backstop.crypto, BACKSTOP_SECRETS_KEY):
the column widens to text and every existing plain secret is sealed in place.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backstop import crypto
from backstop.settings import Settings

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("subscriptions", "secret", type_=sa.Text(), existing_nullable=False)
    settings = Settings()  # the key comes from the environment, as the services' does
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret FROM subscriptions")).all()
    for row in rows:
        bind.execute(
            sa.text("UPDATE subscriptions SET secret = :secret WHERE id = :id"),
            {"id": row.id, "secret": crypto.seal(settings, row.secret)},
        )


def downgrade() -> None:
    settings = Settings()
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, secret FROM subscriptions")).all()
    for row in rows:
        bind.execute(
            sa.text("UPDATE subscriptions SET secret = :secret WHERE id = :id"),
            {"id": row.id, "secret": crypto.open_secret(settings, row.secret)},
        )
    op.alter_column("subscriptions", "secret", type_=sa.String(100), existing_nullable=False)

"""重点联系人 roles by the seed's titles: "leader" becomes town_leader (镇党委政府负责人),
"cadre" town_cadre (镇包村干部).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("contact", "role", type_=sa.String(20), existing_nullable=False)
    op.execute("UPDATE contact SET role = 'town_leader' WHERE role = 'leader'")
    op.execute("UPDATE contact SET role = 'town_cadre' WHERE role = 'cadre'")


def downgrade() -> None:
    op.execute("UPDATE contact SET role = 'leader' WHERE role IN ('town_leader', 'assisting_unit')")
    op.execute(
        "UPDATE contact SET role = 'cadre' WHERE role IN ('town_cadre', 'village_cadre', "
        "'assistance_officer')"
    )
    op.execute("UPDATE contact SET role = 'cadre' WHERE role = 'work_team'")
    op.alter_column("contact", "role", type_=sa.String(10), existing_nullable=False)

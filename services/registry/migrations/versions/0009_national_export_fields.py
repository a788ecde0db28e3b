"""What the national monitoring system's export says of a member and the register did not
hold: 劳动技能 (beside 劳动能力), 健康状况, 务工状况, 务工时间（月）, 大病保险, 商业补充医疗保险,
基本养老保险; and a household's 脱贫年度. All nullable: not known for rows before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PERSON: tuple[sa.Column[object], ...] = (
    sa.Column("labor_skill", sa.String(length=10), nullable=True),
    sa.Column("health_status", sa.String(length=20), nullable=True),
    sa.Column("work_status", sa.String(length=20), nullable=True),
    sa.Column("work_months", sa.SmallInteger(), nullable=True),
    sa.Column("critical_illness_insurance", sa.Boolean(), nullable=True),
    sa.Column("supplementary_insurance", sa.Boolean(), nullable=True),
    sa.Column("pension_insurance", sa.Boolean(), nullable=True),
)


def upgrade() -> None:
    op.add_column("household", sa.Column("exit_year", sa.SmallInteger(), nullable=True))
    for column in _PERSON:
        op.add_column("person", column)


def downgrade() -> None:
    for column in reversed(_PERSON):
        op.drop_column("person", column.name)
    op.drop_column("household", "exit_year")

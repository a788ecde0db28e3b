"""Risk tables: household read model, records, assessments, policy versions, re-score
jobs; seeds policy version 1 with the documented defaults.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:37:18.539652
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.risk.domain import DEFAULT_POLICY

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_assessments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("previous_level", sa.String(length=10), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("previous_score", sa.Integer(), nullable=True),
        sa.Column("factors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("per_capita_income", sa.Float(), nullable=True),
        sa.Column("income_line", sa.Float(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("correlation_id", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_risk_assessments_household", "risk_assessments", ["household_id", "id"], unique=False
    )
    op.create_table(
        "risk_current",
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("factors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("per_capita_income", sa.Float(), nullable=True),
        sa.Column("income_line", sa.Float(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assessment_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("household_id"),
    )
    op.create_index(
        "ix_risk_current_level_region", "risk_current", ["level", "region_code"], unique=False
    )
    op.create_index("ix_risk_current_policy", "risk_current", ["policy_version"], unique=False)
    op.create_index("ix_risk_current_region", "risk_current", ["region_code"], unique=False)
    op.create_table(
        "risk_households",
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("town_code", sa.String(length=9), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("snapshot_version", sa.Integer(), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("members", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("incomes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("guarantees", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("household_id"),
    )
    op.create_table(
        "risk_policies",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("policy", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "risk_records",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("id_hash", sa.String(length=64), server_default="", nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("housing_damaged", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("enrolled", sa.Boolean(), nullable=True),
        sa.Column("batch_id", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", "record_id"),
    )
    op.create_index(
        "ix_risk_records_household", "risk_records", ["household_id", "occurred_on"], unique=False
    )
    op.create_table(
        "risk_rescore_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cursor", sa.String(length=36), server_default="", nullable=False),
        sa.Column("phase", sa.String(length=20), server_default="scan", nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("changed", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_risk_rescore_jobs_status", "risk_rescore_jobs", ["status", "id"], unique=False
    )
    policies = sa.table(
        "risk_policies",
        sa.column("version", sa.Integer()),
        sa.column("policy", postgresql.JSONB()),
        sa.column("author", sa.String()),
        sa.column("note", sa.Text()),
    )
    op.bulk_insert(
        policies,
        [
            {
                "version": 1,
                "policy": DEFAULT_POLICY.model_dump(mode="json"),
                "author": "system",
                "note": "默认政策（DESIGN.md Policy）",
            }
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_risk_rescore_jobs_status", table_name="risk_rescore_jobs")
    op.drop_table("risk_rescore_jobs")
    op.drop_index("ix_risk_records_household", table_name="risk_records")
    op.drop_table("risk_records")
    op.drop_table("risk_policies")
    op.drop_table("risk_households")
    op.drop_index("ix_risk_current_region", table_name="risk_current")
    op.drop_index("ix_risk_current_policy", table_name="risk_current")
    op.drop_index("ix_risk_current_level_region", table_name="risk_current")
    op.drop_table("risk_current")
    op.drop_index("ix_risk_assessments_household", table_name="risk_assessments")
    op.drop_table("risk_assessments")

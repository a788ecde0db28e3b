"""assistance tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 15:36:21.967574
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("monitoring_type", sa.String(20), nullable=True),
        sa.Column("risk_factors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("elimination_method", sa.String(10), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("opened_by", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_cases_household_id"), "cases", ["household_id"], unique=False)
    op.create_index(op.f("ix_cases_region_code"), "cases", ["region_code"], unique=False)
    op.create_index(
        "uq_cases_one_in_progress",
        "cases",
        ["household_id", "kind"],
        unique=True,
        postgresql_where=sa.text("status = 'in_progress'"),
    )
    op.create_table(
        "funds",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("town_code", sa.String(9), nullable=True),
        sa.Column("balance", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_funds_balance_not_negative"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "households",
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("town_code", sa.String(9), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("monitoring_status", sa.String(20), nullable=False),
        sa.Column("monitoring_since", sa.Date(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("household_id"),
    )
    op.create_index(op.f("ix_households_region_code"), "households", ["region_code"], unique=False)
    op.create_index(op.f("ix_households_town_code"), "households", ["town_code"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_plans_household_id"), "plans", ["household_id"], unique=False)
    op.create_index(op.f("ix_plans_region_code"), "plans", ["region_code"], unique=False)
    op.create_table(
        "policy_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("changed_by", sa.String(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "supervision_issues",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("responsible_unit", sa.String(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("found_on", sa.Date(), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("reported_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rectified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by", sa.String(), nullable=True),
        sa.Column("overdue_emitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_issues_deadline_open",
        "supervision_issues",
        ["deadline"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        op.f("ix_supervision_issues_region_code"),
        "supervision_issues",
        ["region_code"],
        unique=False,
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("assignee_type", sa.String(10), nullable=False),
        sa.Column("assignee_code", sa.String(20), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("factors", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("origin_ref", sa.String(64), nullable=True),
        sa.Column("needs_precheck", sa.Boolean(), nullable=False),
        sa.Column("prechecked_by", sa.String(), nullable=True),
        sa.Column("prechecked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("verified_by", sa.String(), nullable=True),
        sa.Column("notes", sa.String(), nullable=True),
        sa.Column("guarantees", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("overdue_emitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'done', 'cancelled')", name="ck_tasks_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_tasks_due_open",
        "tasks",
        ["due_on"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(op.f("ix_tasks_household_id"), "tasks", ["household_id"], unique=False)
    op.create_index(op.f("ix_tasks_region_code"), "tasks", ["region_code"], unique=False)
    op.create_index(
        "uq_tasks_open_verification",
        "tasks",
        ["household_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open' AND kind = 'verification'"),
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("visitor", sa.String(), nullable=False),
        sa.Column("visited_on", sa.Date(), nullable=False),
        sa.Column("findings", sa.String(), nullable=False),
        sa.Column("guarantees", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_visits_household_on", "visits", ["household_id", "visited_on"], unique=False
    )
    op.create_index(op.f("ix_visits_region_code"), "visits", ["region_code"], unique=False)
    op.create_index(op.f("ix_visits_visited_on"), "visits", ["visited_on"], unique=False)
    op.create_table(
        "accountability_actions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("issue_id", sa.String(), nullable=True),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("person_name", sa.String(), nullable=False),
        sa.Column("unit", sa.String(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["supervision_issues.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_accountability_actions_region_code"),
        "accountability_actions",
        ["region_code"],
        unique=False,
    )
    op.create_table(
        "case_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("step", sa.String(20), nullable=False),
        sa.Column("acted_by", sa.String(), nullable=False),
        sa.Column("acted_on", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "step", name="uq_case_steps_once"),
    )
    op.create_index(op.f("ix_case_steps_case_id"), "case_steps", ["case_id"], unique=False)
    op.create_table(
        "grants",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(12), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("city_fund_id", sa.String(36), nullable=False),
        sa.Column("town_fund_id", sa.String(36), nullable=False),
        sa.Column("city_part", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("town_part", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("granted_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["city_fund_id"],
            ["funds.id"],
        ),
        sa.ForeignKeyConstraint(
            ["town_fund_id"],
            ["funds.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_grants_household_id"), "grants", ["household_id"], unique=False)
    op.create_index(op.f("ix_grants_region_code"), "grants", ["region_code"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("txn_id", sa.String(36), nullable=False),
        sa.Column("fund_id", sa.String(36), nullable=False),
        sa.Column("account", sa.String(60), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("memo", sa.String(), nullable=False),
        sa.Column("posted_on", sa.Date(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fund_id"],
            ["funds.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_ledger_entries_fund_id"), "ledger_entries", ["fund_id"], unique=False)
    op.create_index(op.f("ix_ledger_entries_txn_id"), "ledger_entries", ["txn_id"], unique=False)
    op.create_table(
        "measures",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("household_id", sa.String(36), nullable=False),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("end_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("responsible_unit", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_measures_household_id"), "measures", ["household_id"], unique=False)
    op.create_index(op.f("ix_measures_plan_id"), "measures", ["plan_id"], unique=False)
    op.create_table(
        "rectification_evidence",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("issue_id", sa.String(36), nullable=False),
        sa.Column("submitted_by", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("attachment_url", sa.String(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["supervision_issues.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_rectification_evidence_issue_id"),
        "rectification_evidence",
        ["issue_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rectification_evidence_issue_id"), table_name="rectification_evidence")
    op.drop_table("rectification_evidence")
    op.drop_index(op.f("ix_measures_plan_id"), table_name="measures")
    op.drop_index(op.f("ix_measures_household_id"), table_name="measures")
    op.drop_table("measures")
    op.drop_index(op.f("ix_ledger_entries_txn_id"), table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_fund_id"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_grants_region_code"), table_name="grants")
    op.drop_index(op.f("ix_grants_household_id"), table_name="grants")
    op.drop_table("grants")
    op.drop_index(op.f("ix_case_steps_case_id"), table_name="case_steps")
    op.drop_table("case_steps")
    op.drop_index(
        op.f("ix_accountability_actions_region_code"), table_name="accountability_actions"
    )
    op.drop_table("accountability_actions")
    op.drop_index(op.f("ix_visits_visited_on"), table_name="visits")
    op.drop_index(op.f("ix_visits_region_code"), table_name="visits")
    op.drop_index("ix_visits_household_on", table_name="visits")
    op.drop_table("visits")
    op.drop_index(
        "uq_tasks_open_verification",
        table_name="tasks",
        postgresql_where=sa.text("status = 'open' AND kind = 'verification'"),
    )
    op.drop_index(op.f("ix_tasks_region_code"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_household_id"), table_name="tasks")
    op.drop_index(
        "ix_tasks_due_open", table_name="tasks", postgresql_where=sa.text("status = 'open'")
    )
    op.drop_table("tasks")
    op.drop_index(op.f("ix_supervision_issues_region_code"), table_name="supervision_issues")
    op.drop_index(
        "ix_issues_deadline_open",
        table_name="supervision_issues",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_table("supervision_issues")
    op.drop_table("policy_versions")
    op.drop_index(op.f("ix_plans_region_code"), table_name="plans")
    op.drop_index(op.f("ix_plans_household_id"), table_name="plans")
    op.drop_table("plans")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_households_town_code"), table_name="households")
    op.drop_index(op.f("ix_households_region_code"), table_name="households")
    op.drop_table("households")
    op.drop_table("funds")
    op.drop_index(
        "uq_cases_one_in_progress",
        table_name="cases",
        postgresql_where=sa.text("status = 'in_progress'"),
    )
    op.drop_index(op.f("ix_cases_region_code"), table_name="cases")
    op.drop_index(op.f("ix_cases_household_id"), table_name="cases")
    op.drop_table("cases")

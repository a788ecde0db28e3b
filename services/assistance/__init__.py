"""Backstop assistance: verification tasks (入户核实), the identification and elimination
procedures, visits, assistance plans, funds and supervision. One module per use case:

- `app.py`: the service (routers, consumers of risk and registry, overdue jobs).
- `api.py`: HTTP routes of tasks, procedures, visits, plans, funds and supervision.
- `domain.py`: the pure rules (no SQL, HTTP or Kafka).
- `models.py`: tables and their Create/Public schemas.
- `common.py`: what they share: events, policy, household read model, locking, list pages.
- `tasks.py`: verification tasks, the county's first check (初核), claim, overdue.
- `procedure.py`: 民主评议 → 公示 → 乡镇审核 → 县级确认, and 风险消除 (elimination).
- `visits.py`: contacts (走访) and the contact compliance report.
- `plans.py`: assistance plans (帮扶计划) and their measures.
- `funds.py`: funds, deposits, grants split city/town, ledger and statements.
- `supervision.py`: supervision issues (督查), rectification evidence, accountability.
- `clues.py`: clues (线索) from households, the public, cadres and inspections.
- `enrolment.py`: 纳入建档立卡核查, checks of people not in the register, to the register.
- `campaigns.py`: review campaigns (回头看) generating review tasks.
- `reports.py`: the quarterly dynamic-monitoring report (季度动态监测): queries, closing, routes.
- `quarterly.py`: the report's pure part: quarters, the late-data rule, town and county rows.
- `quarterly_xlsx.py`: the report as the county office's XLSX workbook.
- `data_quality.py`: the quality service's sweep summaries, for the report's 数据质量 section.
- `province_warnings.py`: the provincial platform's warnings (省平台预警) in, outcomes back.
- `province.py`: the platform's pure words: systems, items, levels, its export's rows.
- `monthly_reports.py`: 月汇报, each town's monthly report: facts, sign-off, late job, routes.
- `monthly.py`: the monthly report's pure part: counts per town and person, visit signals.
- `returns.py`: the quarterly return to the province (季度动态监测上报): facts, freezing, routes.
- `province_return.py`: the return's pure part: guarantee and income changes, counts, diff.
- `province_return_xlsx.py`: the return as the county office's XLSX workbook.
"""

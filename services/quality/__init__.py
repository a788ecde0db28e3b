"""Backstop quality: the data-quality audit (数据质量核查), the register checked the way
provincial inspections do. One module per use case:

- `app.py`: the service (routes, the consumer of the other five's events, sweep jobs).
- `api.py`: HTTP routes: rules, findings, exceptions, sweeps, summary, 整改清单.
- `domain.py`: the rule catalogue, pure (no SQL, HTTP or Kafka).
- `models.py`: tables and their Create/Public schemas.
- `config.py`: the `QUALITY_*` settings (the rules' limits, the sweep's cadence).
- `common.py`: what they share: the service's name and clock, SQL and amount helpers.
- `reactions.py`: the consumer: each household's snapshot kept from events, then re-checked.
- `households.py`: a household as the rules read it (one statement per chunk).
- `checks.py`: the catalogue run over households, findings opened and closed.
- `exceptions.py`: accepted exceptions (例外), county level.
- `sweeps.py`: sweeps on demand and nightly, chunk by chunk, resuming at their cursor.
- `escalation.py`: towns leaving error findings open too long (督办), once a day.
- `reports.py`: the summary by town × category and the town's 整改清单 (XLSX).
"""

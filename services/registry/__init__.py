"""Backstop registry.

The household register (建档立卡): households, members, regions, incomes, guarantees, key contacts and monitoring status.

Modules:
- app.py: the service (routes, the assistance consumer, the outbox relay).
- api.py: HTTP routes: parse, authorize, call a command or a query, shape the answer.
- domain.py: pure rules (ID numbers, relations, income, monitoring transitions).
- models.py: tables and the XCreate / XPublic schemas.
- views.py: a household as loaded, its event snapshot, and the writes every change ends with.
- drafts.py: a new household checked against the rules before anything is written.
- registering.py: checked households written in bulk (COPY) with history and events.
- commands.py: create, update, members, income and contacts, each in its unit of work.
- reactions.py: what registry does on assistance's monitoring decisions and findings.
- queries.py: reads for the API (lists, people by ID number, regions, history).
- import_file.py: reading a register export (the national system's, CSV/XLSX/XLS) into households' rows.
- bulk_import.py: an import checked and written chunk by chunk, with its error report.
- reimport.py: households already registered brought up to date from a newer export.
- county.py: the county this registry serves, its towns and villages.
- seed.py: the demo county's generated households, and a register export for benchmarks.
"""

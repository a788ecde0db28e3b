"""Backstop datasync.

Department feeds (医保局, 应急管理局, 民政局, 教育局): batches, validation, matching to households, the delivery calendar.

- `app.py`: the service (routers, the person-index consumer, the late-delivery job).
- `api.py`: the HTTP routes: batches (JSON or file), reading them, a record's history, unmatched records, deliveries.
- `domain.py`: pure rules: sources, record validation and derivations, the delivery calendar.
- `columns.py`: how files name the columns (aliases per source, mapping profiles), Chinese names of fields and error codes.
- `parsing.py`: an upload into rows: JSON, and files through the kernel's `backstop.sheets`.
- `profiles.py`: the county's versioned mapping profiles (file header → field).
- `preview.py`: a file read and checked as an upload would be, nothing stored.
- `ingest.py`: applying a batch: validate, de-duplicate, store by COPY, match, emit; corrections and voids.
- `matching.py`: the id_hash index from registry snapshots; matching waiting records.
- `unmatched.py`: records.unmatched, records of people not in the register (纳入建档立卡核查).
- `deliveries.py`: the late-delivery job (delivery.late).
- `queries.py`: the read side (batches, errors, records, unmatched, deliveries).
- `models.py`: tables and response schemas.
- `config.py`: datasync's settings.
"""

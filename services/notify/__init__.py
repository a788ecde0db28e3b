"""Backstop notify: reminders from events and schedules, escalation, and signed webhooks.
One module per use case:

- `app.py`: the service (consumers of assistance, datasync and registry events, jobs).
- `api.py`: HTTP routes: reminders, the recipient directory, schedules, subscriptions.
- `domain.py`: the pure rules: who is reminded of what, in which words, and when.
- `models.py`: tables (and their Core handles) and the Create/Public schemas.
- `config.py`: deployment settings (`NOTIFY_*`): channels, gateways, job cadences.
- `reminders.py`: the reminder store: create once, final status, cancel, retry; directory.
- `reactions.py`: the reminders each event calls for, and the household read model.
- `scheduler.py`: reminders from stored schedules (Asia/Shanghai), exactly once.
- `subscriptions.py`: webhook subscriptions to risk alerts and queueing each alert.
- `delivery.py`: the jobs sending reminders through channels and alerts to webhooks.
- `channels.py`: SMS, WeChat Work, e-mail, webhook and local channels behind one interface.
- `egress.py`: every HTTP call to an address someone gave, checked as it connects.
"""

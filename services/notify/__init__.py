"""Backstop notify: Reminders, schedules, escalation and signed webhooks."""

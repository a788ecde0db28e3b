"""Backstop shared kernel: the one way every service does settings, sessions, events,
Kafka, outbox, inbox, auth, errors, logs and metrics."""

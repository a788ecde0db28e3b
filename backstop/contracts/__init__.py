"""Event payloads, one module per producing service. Importing this package registers
every event type, so any consumer can validate any event it receives."""

from backstop.contracts import assistance, datasync, kernel, notify, quality, registry, risk

__all__ = ["assistance", "datasync", "kernel", "notify", "quality", "registry", "risk"]

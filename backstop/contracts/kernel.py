"""A probe event used by the kernel's own tests and benchmark."""

from pydantic import BaseModel

from backstop.events import event_type

PROBE_TOPIC = "kernel.probes"


@event_type("backstop.kernel.probe.emitted.v1", topic=PROBE_TOPIC)
class ProbeEmitted(BaseModel):
    household_id: str
    seq: int
    fail: bool = False  # a consumer under test raises on it (poison message)

"""Tables of the datasync database and their Create/Public schemas."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class DatasyncBase(SQLModel, registry=registry()):
    """Base of every datasync table: its own metadata, so its migrations see only these."""

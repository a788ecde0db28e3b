"""Tables of the notify database and their Create/Public schemas."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class NotifyBase(SQLModel, registry=registry()):
    """Base of every notify table: its own metadata, so its migrations see only these."""

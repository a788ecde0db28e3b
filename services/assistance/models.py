"""Tables of the assistance database and their Create/Public schemas."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class AssistanceBase(SQLModel, registry=registry()):
    """Base of every assistance table: its own metadata, so its migrations see only these."""

"""Tables of the registry database and their Create/Public schemas."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class RegistryBase(SQLModel, registry=registry()):
    """Base of every registry table: its own metadata, so its migrations see only these."""

"""Tables of the risk database and their Create/Public schemas."""

from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class RiskBase(SQLModel, registry=registry()):
    """Base of every risk table: its own metadata, so its migrations see only these."""

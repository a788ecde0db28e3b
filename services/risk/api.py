"""HTTP routes of the risk service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")

"""HTTP routes of the assistance service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")

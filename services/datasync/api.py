"""HTTP routes of the datasync service."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")

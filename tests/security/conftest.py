from collections.abc import AsyncIterator

import pytest

from backstop.settings import Settings
from tests.kernel.conftest import kernel_settings
from tests.support import Stack

__all__ = ["kernel_settings"]  # the kernel tables


@pytest.fixture(scope="session")
async def notify_settings(stack: Stack) -> AsyncIterator[Settings]:
    """A notify database of the security tests' own: tests/notify's, of the same run, may
    still have a session open when these start, and creating it again drops it first."""
    yield await stack.create_database("notify", label="_security")

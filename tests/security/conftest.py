from tests.assistance.conftest import a
from tests.kernel.conftest import kernel_settings
from tests.notify.conftest import notify_settings

# The kernel tables; a notify database; the assistance service in-process.
__all__ = ["a", "kernel_settings", "notify_settings"]

from tests.kernel.conftest import kernel_settings
from tests.notify.conftest import notify_settings

__all__ = ["kernel_settings", "notify_settings"]  # the kernel tables; a notify database

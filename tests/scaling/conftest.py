from tests.kernel.conftest import kernel_settings

__all__ = ["kernel_settings"]  # the kernel tables and the probe consumer's table

from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.registry.models import RegistryBase

run_env("registry", [RegistryBase.metadata, kernel_metadata])

from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.notify.models import NotifyBase

run_env("notify", [NotifyBase.metadata, kernel_metadata])

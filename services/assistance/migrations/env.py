from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.assistance.models import AssistanceBase

run_env("assistance", [AssistanceBase.metadata, kernel_metadata])

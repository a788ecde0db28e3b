from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.datasync.models import DatasyncBase

run_env("datasync", [DatasyncBase.metadata, kernel_metadata])

from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.quality.models import QualityBase

run_env("quality", [QualityBase.metadata, kernel_metadata])

from backstop.migrate import run_env
from backstop.tables import kernel_metadata
from services.risk.models import RiskBase

run_env("risk", [RiskBase.metadata, kernel_metadata])

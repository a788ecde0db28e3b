"""Alembic, the same way for every service: `python -m backstop.migrate registry ...`.

Each service keeps its scripts in `services/<name>/migrations` and its own version table
(`alembic_version_<name>`), and targets its own metadata plus the kernel tables.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from backstop.settings import SERVICES, get_settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(service: str, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url or get_settings(service).db_url)
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


def run_env(service: str, target_metadata: list[MetaData]) -> None:
    """The body of every service's `migrations/env.py`."""
    from alembic import context

    config = context.config
    url = config.get_main_option("sqlalchemy.url") or get_settings(service).db_url
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table": f"alembic_version_{service}",
        "compare_type": True,
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m backstop.migrate")
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    parser.add_argument("--revision", default="head")
    args = parser.parse_args()
    for service in args.services:
        upgrade(service, revision=args.revision)
        print(f"migrated {service} to {args.revision}")


if __name__ == "__main__":
    main()

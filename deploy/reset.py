"""`make reset`: start over. Stops the local services, then empties every service's
database (dropped and created again, empty) and deletes every contract topic and its DLQ,
after asking. The next `make run` migrates, creates the topics and seeds the demo again.

Works on whatever the settings point at (`DATABASE_URL`/`PG*`, `KAFKA_BOOTSTRAP_SERVERS`,
`BACKSTOP_TOPIC_PREFIX`), so a user need not know where PostgreSQL and Kafka keep their
data."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import UnknownTopicOrPartitionError

from backstop.bus import TOPICS, dlq_topic, make_admin
from backstop.settings import SERVICES, Settings, get_settings


def _split(url: str) -> tuple[str, str]:
    """(DSN of the server's `postgres` database, the database's name) for a service URL."""
    parts = urlsplit(url.replace("+asyncpg", ""))
    return parts._replace(path="/postgres").geturl(), parts.path.lstrip("/")


async def wipe_databases(settings: Sequence[Settings]) -> list[str]:
    """Drop and create again, empty, each service's database. Returns their names."""
    names = []
    for service_settings in settings:
        dsn, name = _split(service_settings.db_url)
        conn = await asyncpg.connect(dsn)
        try:
            # The owner (the service's user) may drop it; FORCE ends leftover sessions.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        names.append(name)
    return names


async def delete_topics(settings: Settings) -> list[str]:
    """Delete every contract topic and its DLQ that exists on the broker."""
    admin = make_admin(settings)
    await admin.start()
    try:
        wanted = {settings.topic(t) for t in TOPICS} | {
            dlq_topic(settings.topic(t)) for t in TOPICS
        }
        present = sorted(wanted & set(await admin.list_topics()))
        if present:
            try:
                await admin.delete_topics(present)
            except UnknownTopicOrPartitionError:
                pass  # deleted meanwhile
        return present
    finally:
        await admin.close()


async def reset(settings: Sequence[Settings]) -> tuple[list[str], list[str]]:
    return await wipe_databases(settings), await delete_topics(settings[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.reset", description=__doc__)
    parser.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    settings = [get_settings(service) for service in SERVICES]
    databases = ", ".join(_split(s.db_url)[1] for s in settings)
    server = urlsplit(settings[0].db_url).hostname
    print(f"This deletes ALL data of Backstop's local run:\n"
          f"  databases {databases} on {server}\n"
          f"  every Backstop topic on Kafka {settings[0].kafka_bootstrap_servers}")  # fmt: skip
    if not args.yes:
        if not sys.stdin.isatty():
            sys.exit("not a terminal: run `python -m deploy.reset --yes` to reset without asking")
        if input("Type 'reset' to go on: ").strip() != "reset":
            sys.exit("nothing changed")
    from deploy.run import stop

    for service in SERVICES:
        stop(service)
    databases_wiped, topics = asyncio.run(reset(settings))
    print(f"emptied {len(databases_wiped)} databases, deleted {len(topics)} topics;"
          " `make run` starts over")  # fmt: skip


if __name__ == "__main__":
    main()

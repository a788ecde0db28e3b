"""`backstop` command: operational helpers shared by the runner and the services."""

from __future__ import annotations

import argparse
import asyncio

from backstop import outbox
from backstop.bus import ensure_topics
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.settings import SERVICES, Settings, get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="backstop")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("topics", help="create every contract topic and its DLQ (idempotent)")
    parked = sub.add_parser(
        "outbox", help="outbox rows Kafka refused for good: list, re-send or drop them"
    )
    parked.add_argument("action", choices=["parked", "resend", "drop"])
    parked.add_argument("--service", required=True, choices=SERVICES)
    parked.add_argument("--id", type=int, action="append", dest="ids", help="row id (repeat)")
    parked.add_argument("--all", action="store_true", help="resend/drop every parked row")
    args = parser.parse_args(argv)
    if args.command == "outbox":
        if args.action != "parked" and not (args.ids or args.all):
            parser.error(f"outbox {args.action} needs --id N (repeatable) or --all")
        asyncio.run(
            _outbox(args.action, get_settings(args.service), None if args.all else args.ids)
        )
    elif args.command == "topics":
        asyncio.run(ensure_topics(get_settings()))
        print("topics ready")


async def _outbox(action: str, settings: Settings, ids: list[int] | None) -> None:
    engine = make_engine(settings.db_url, pool_size=1)
    try:
        async with unit_of_work(make_session_factory(engine)) as session:
            if action == "parked":
                for row in await outbox.parked(session, limit=10_000):
                    print(f"{row.id}\t{row.parked_at:%Y-%m-%d %H:%M:%S}\t{row.event_type}"
                          f"\t{row.topic}\t{row.size} bytes\t{row.error}")  # fmt: skip
            elif action == "resend":
                print(f"{await outbox.resend_parked(session, ids)} row(s) queued to send again")
            else:
                print(f"{await outbox.drop_parked(session, ids)} row(s) dropped")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    main()

"""`backstop` command: operational helpers shared by the runner and the services."""

from __future__ import annotations

import argparse
import asyncio
import importlib

from backstop.bus import ensure_topics
from backstop.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="backstop")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("topics", help="create every contract topic and its DLQ (idempotent)")
    seed = sub.add_parser("seed", help="generate the demo county's households (registry)")
    seed.add_argument("--households", type=int, default=2000)
    seed.add_argument("--seed", type=int, default=20261128)
    args, rest = parser.parse_known_args(argv)
    if args.command == "topics":
        asyncio.run(ensure_topics(get_settings()))
        print("topics ready")
    elif args.command == "seed":
        # The generator belongs to the registry service (it knows the county's villages).
        module = importlib.import_module("services.registry.seed")
        module.main(["--households", str(args.households), "--seed", str(args.seed), *rest])


if __name__ == "__main__":
    main()

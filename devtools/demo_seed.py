"""`python -m devtools.demo_seed FILE`: what `bin/run` loads on first start, also for
services that run elsewhere (docker-compose's opt-in `demo` service, which mounts
devtools/): demo customers into an empty customer store, and, on a store without
credentials, the demo credentials (an admin, the platform `demo-platform`, one token per
department) written to FILE, readable by its owner only. Run again, it changes nothing.

`--owner-of PATH` hands FILE (and its folder, if root owns it) to PATH's owner: in a
container that runs as root, a bind mount of the checkout tells who the host user is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from devtools import demo
from services import credentials_cli
from services.core import access
from services.core.settings import Settings, from_environment
from services.router import table_file


def seed(settings: Settings, credentials_file: Path, *, customers: int = 2000) -> list[str]:
    """Load what is missing; returns what was done, one line each."""
    done = []
    loaded = asyncio.run(demo.seed_if_empty(settings.database_url, count=customers))
    done.append(f"demo customers loaded: {loaded}" if loaded else "customer store in use")
    departments = sorted(table_file.load(settings.routing_table_file).departments)
    if asyncio.run(issue_demo_credentials(settings, departments, credentials_file)):
        done.append(f"demo credentials (admin, platform, one per department) written to"
                    f" {credentials_file}")
    else:
        done.append("credentials in use: none issued")
    return done


async def issue_demo_credentials(settings: Settings, departments: Sequence[str],
                                 out: Path) -> bool:
    """On a store without credentials: an admin token, a demo platform's key and a token
    per department, written to `out` (readable by its owner only). False if the store
    already had credentials."""
    async with credentials_cli.open_store(settings) as store:
        if await store.listed():
            return False
        lines = []
        _, token = await store.issue(access.Role.ADMIN, None, label="demo admin")
        lines.append(f"ADMIN_TOKEN={token}")
        _, token = await store.issue(access.Role.PLATFORM, "demo-platform",
                                     label="demo platform")
        lines.append(f"PLATFORM_TOKEN={token}")
        for department in departments:
            _, token = await store.issue(access.Role.DEPARTMENT, department,
                                         label="demo department")
            lines.append(f"{department.upper()}_TOKEN={token}")
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode above is only a new file's: one there before (from an older store, or
    # made by hand) keeps its own, perhaps readable by others, unless set.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")
    return True


def hand_over(credentials_file: Path, owner_of: Path) -> None:
    """Give the file, and its folder if root owns it, to the owner of `owner_of`."""
    owner = owner_of.stat()
    folder = credentials_file.parent
    if folder.stat().st_uid == 0:
        os.chown(folder, owner.st_uid, owner.st_gid)
    if credentials_file.exists():
        os.chown(credentials_file, owner.st_uid, owner.st_gid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo_seed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("credentials_file", type=Path)
    parser.add_argument("--owner-of", type=Path, help="give the file to this path's owner")
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args(argv)
    for line in seed(from_environment(), args.credentials_file, customers=args.customers):
        print(line)
    if args.owner_of is not None:
        hand_over(args.credentials_file, args.owner_of)


if __name__ == "__main__":
    main()

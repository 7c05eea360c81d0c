"""The command line: flags and BR_* environment variables into Settings, and the one-shot commands.

Flags are compatible with the Go server: ``--flag value`` and ``--flag=value`` both work, every flag with an
environment variable reads it when the flag is absent, and an invalid value exits with status 2 naming the flag
and the value.
"""

import argparse
import os
import sys
from typing import Any

from backup_repository import __version__
from backup_repository.settings import OPTIONS, Settings, default_storage_url

DESCRIPTION = (
    "backup-repository: a zero-knowledge, multi-tenant storage server for GPG-encrypted backups. "
    "Every flag with an environment variable (shown in brackets) reads it when the flag is not given."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backup-repository", description=DESCRIPTION, allow_abbrev=False)
    for option in OPTIONS:
        env = f" [{option.env}]" if option.env else ""
        shown_default = "" if option.secret else f" (default: {option.default or 'empty'})"
        kwargs: dict[str, Any] = dict(dest=option.dest, default=None, help=option.help + shown_default + env)
        if option.boolean:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        else:
            kwargs.update(metavar="VALUE")
        parser.add_argument(*option.flags, **kwargs)
    commands = parser.add_argument_group("one-shot commands (print and exit)")
    commands.add_argument("--encode-password", metavar="PASSWORD",
                          help="print the hash of PASSWORD for a BackupUser document or a Secret")
    commands.add_argument("--hash-jwt", metavar="TOKEN", help="print the sessionId (sha256 hex) of TOKEN")
    commands.add_argument("--verify", action="store_true",
                          help="re-read every stored version and check its sha256; print one line per corrupt or "
                               "missing object and a summary; exit 1 if any")
    commands.add_argument("--validate-config", action="store_true",
                          help="check every configuration document, print one line per problem and per warning "
                               "(a setting that works differently from the Go server); exit 1 if any problem")
    commands.add_argument("--version", action="version", version=f"backup-repository {__version__}")
    return parser


def parse_settings(argv=None, environ=None):
    """Return (parsed arguments, Settings); exit 2 with a message naming the flag on an invalid value."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {}
    for option in OPTIONS:
        raw, source = getattr(args, option.dest), option.flags[-1]
        if raw is None and option.env and option.env in environ:
            raw, source = environ[option.env], f"{option.flags[-1]} (from {option.env})"
        if raw is None:
            raw = option.default
        try:
            values[option.dest] = option.parse(raw)
        except ValueError as exc:
            shown = "***" if option.secret else repr(raw)
            parser.error(f"invalid value {shown} for {source}: {exc}")
    if not values["storage_url"]:
        values["storage_url"] = default_storage_url()
    return args, Settings(**values)


def main(argv=None) -> int:
    args, settings = parse_settings(argv)
    if args.encode_password is not None:
        from backup_repository.security.passwords import encode_password

        print(encode_password(args.encode_password))
        return 0
    if args.hash_jwt is not None:
        from backup_repository.security.tokens import hash_token

        print(hash_token(args.hash_jwt))
        return 0
    if args.validate_config:
        return validate_config(settings)
    if args.verify:
        return verify(settings)

    from backup_repository import server

    return server.run(settings)


def validate_config(settings: Settings) -> int:
    """``--validate-config``: every problem of the configuration (a directory, or a namespace of a cluster with
    --provider=kubernetes), one per line, then every warning, one per line starting ``warning:``; exit status 1
    when there is any problem (warnings alone: 0), 2 when the source cannot be read."""
    import asyncio

    from backup_repository.config.provider import ConfigurationUnavailable
    from backup_repository.context import make_configuration

    async def read():
        provider = make_configuration(settings)
        try:
            await provider.open()
            return provider.root, provider.snapshot
        finally:
            await provider.stop()

    try:
        root, snapshot = asyncio.run(read())
    except ConfigurationUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in snapshot.problems:
        print(problem)
    for warning in snapshot.warnings:
        print(f"warning: {warning}")
    print(f"{root}: {len(snapshot.users)} users, {len(snapshot.collections)} collections, "
          f"{len(snapshot.problems)} problems, {len(snapshot.warnings)} warnings", file=sys.stderr)
    return 1 if snapshot.problems else 0


def verify(settings: Settings) -> int:
    """``--verify``: print one line per problem and a summary; exit status 1 when anything is wrong, 2 when the
    database or the store cannot be reached."""
    import asyncio
    import time

    from backup_repository.context import open_stores
    from backup_repository.services.integrity import verify_all

    async def run() -> int:
        async with open_stores(settings) as (db, storage):
            began = time.monotonic()
            summary = await verify_all(db, storage, report=print)
            print(summary.describe(time.monotonic() - began), file=sys.stderr)
            return 1 if summary.problems else 0

    try:
        return asyncio.run(run())
    except Exception as exc:  # cannot reach the database or the store: say what, not a traceback
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2

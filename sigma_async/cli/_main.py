"""The ``sigma-async`` command tree and its dispatch: argparse over the client, thin."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._client import SigmaClient
from .._version import __version__
from ..errors import SigmaError, sole_exception
from . import _commands as cmd
from . import _watch
from ._extras import install_hint
from ._output import Output, describe_error

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

Handler = Callable[[SigmaClient, argparse.Namespace, Output], Awaitable[int]]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

DESCRIPTION = """\
Manage Sigma Livestream channels, sessions and events; watch sessions live; provision channels in bulk.

Try it with no account first:  sigma-async demo
"""

EPILOG = """\
credentials, from the first place that has them:
  flags (--username, --secret-key, --app-id, --base-url), then the environment (SIGMA_USERNAME,
  SIGMA_SECRET_KEY, SIGMA_APP_ID, SIGMA_BASE_URL), then --env-file (the console's "Download as .env file").
  Prefer the environment or a file for the secret key: a flag is visible to other users in the process list.

there is no "channels list": the Sigma API has no endpoint that lists channels. Keep the ids that
"channels create" and "channels create-many" print (with --json they are one JSON object per line).

exit status: 0 ok, 1 the operation failed (API error, failed bulk item), 2 usage error, 130 interrupted.
"""


#: Modules that each add one top-level command with options of its own, in the order ``--help`` lists them.
#: Each defines ``add_parser(commands, common) -> argparse.ArgumentParser``: ``commands`` is the top-level
#: subparsers object, ``common`` the parser of the common options, to pass as ``parents=[common]`` so that
#: ``--json``, credentials etc. work after the command too. The command's parser sets its handler with
#: ``set_defaults(handler=run)``, where ``async def run(client, args, out) -> int`` gets an open
#: ``SigmaClient`` (credentials and base URL already resolved), the parsed ``args`` and the ``Output``.
#: A module not present is skipped; one that needs an extra not installed becomes a command that names it.
COMMAND_MODULES: tuple[str, ...] = ("sigma_async.cli._playback", "sigma_async.cli._relay", "sigma_async.cli._apply")

LEAF_EPILOG = "Common options (--json, --timeout, -v, credentials) go before or after the command: see sigma-async -h."


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; common options are accepted before or after the subcommand."""
    parser = argparse.ArgumentParser(
        prog="sigma-async", description=DESCRIPTION, epilog=EPILOG, parents=[_common_options(shown=True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Each command accepts them too, listed once in the top-level help rather than in every command's.
    common = _common_options(shown=False)

    def leaf(group: Any, name: str, handler: Handler | None, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=LEAF_EPILOG
        )
        sub.set_defaults(handler=handler, subparser=sub)
        return sub

    channels = commands.add_parser(
        "channels", help="create, get, start, stop, delete channels; create many from a file",
        description="Channels. (No 'list': the API has no endpoint that lists channels.)",
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, handler, help_text in (
        ("get", cmd.channels_get, "show a channel, with its RTMP server and stream key"),
        ("start", cmd.channels_start, "start a live session; prints the session id"),
        ("stop", cmd.channels_stop, "stop the channel's live session"),
        ("delete", cmd.channels_delete, "delete a channel"),
    ):
        leaf(channels, name, handler, help_text).add_argument("channel_id", metavar="CHANNEL")

    create = leaf(channels, "create", cmd.channels_create, "create a channel (vendor defaults: 1080p/720p/480p, HLS)")
    create.add_argument("--name", required=True)
    create.add_argument("--description")
    create.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeat for more)")
    create.add_argument("--stop-timeout", type=int, default=30, metavar="SECONDS",
                        help="end the session this long after the signal is lost (default: %(default)s)")
    s3 = create.add_argument_group("catchup recording to S3 (all of them, or none)")
    s3.add_argument("--s3-access-key")
    s3.add_argument("--s3-bucket")
    s3.add_argument("--s3-endpoint", metavar="URL")
    s3.add_argument("--s3-region")
    s3.add_argument("--s3-secret-key", help=f"prefer the {cmd.S3_SECRET_ENV} environment variable")
    s3.add_argument("--s3-segment-prefix")

    many = leaf(channels, "create-many", cmd.channels_create_many,
                "create the channels described in FILE, many at a time")
    many.description = (
        "Create the channels described in FILE: a JSON array, or JSON lines, of channel specs with the fields of "
        "ChannelCreate in snake_case or the API's camelCase (name, description, tags, stopTimeout, "
        f"destinationCatchup: {{accessKey, bucket, endpoint, region, secretKey}}, ...). {cmd.S3_SECRET_ENV} "
        "fills a missing S3 secretKey. Invalid items fail alone and are not sent. Exit status 1 if any item failed."
    )
    many.add_argument("file", metavar="FILE", help="the specs; - reads standard input")
    many.add_argument(
        "--concurrency", type=cmd.count_arg, default=16, metavar="N", help="creates in flight (default: 16)"
    )
    many.add_argument("--rate-limit", type=cmd.positive, metavar="PER_SECOND", help="cap on creates started per second")
    many.add_argument("--failures-out", metavar="PATH", help="write failures here as JSON lines (default: stderr)")
    many.add_argument("--dry-run", action="store_true", help="check every spec and send nothing")

    sessions = commands.add_parser("sessions", help="list a channel's sessions; a session's status").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = leaf(sessions, "list", cmd.sessions_list, "list a channel's sessions, newest first (every page)")
    listing.add_argument("channel_id", metavar="CHANNEL")
    listing.add_argument("--limit", type=cmd.count_arg, metavar="N", help="stop after N sessions")
    leaf(sessions, "status", cmd.sessions_status, "a session's live status").add_argument(
        "session_id", metavar="SESSION"
    )

    events = commands.add_parser("events", help="list a session's events").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    ev = leaf(events, "list", cmd.events_list, "list a session's events, newest first")
    ev.add_argument("session_id", metavar="SESSION")
    ev.add_argument("--limit", type=cmd.count_arg, metavar="N", help="stop after N events")

    watch = leaf(commands, "watch", _watch.watch, "print a session's transitions as they happen, until it ends")
    watch.set_defaults(client_class=_watch.ReportingClient)
    watch.add_argument("session_id", metavar="SESSION[@CHANNEL]", nargs="?",
                       help="the session; @CHANNEL names its channel (the API cannot), which --playback needs")
    watch.add_argument("--channel", metavar="CHANNEL", help="follow a channel across its sessions instead")
    watch.add_argument("--playback", action="store_true",
                       help="judge the HLS output too: playback_stalled / playback_resumed between live and ended")
    watch.add_argument("--playback-stall-after", type=cmd.positive, metavar="SECONDS",
                       help="seconds without an advance that make a stall (default: 3 target durations)")
    watch.add_argument("--interval", type=cmd.positive, default=2.0, help="seconds between polls (default: 2)")
    watch.add_argument("--since", metavar="CURSOR", help="resume after this transition's cursor (from --json)")
    watch.add_argument("--max-silence", type=cmd.positive, metavar="SECONDS",
                       help="give up (exit status 1) after this long without an answer (default: keep trying)")

    # The emulator's options are its own (see `sigma-async emulator --help`); main() passes them through.
    commands.add_parser("emulator", add_help=False, help="serve a fake Sigma API on loopback (--port, --speed, ...)")

    demo = leaf(commands, "demo", None, "a tour in a few seconds against an embedded emulator; no account needed")
    demo.add_argument("--channels", type=cmd.count_arg, default=5, help="channels to provision (default: 5)")
    demo.add_argument("--speed", type=cmd.positive, default=30.0, help="emulated clock speed-up (default: 30)")

    for module in COMMAND_MODULES:
        _add_command_module(commands, common, module)
    return parser


def _add_command_module(commands: Any, common: argparse.ArgumentParser, module: str) -> None:
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return  # not part of this installation
        hint = install_hint(exc.name)
        if hint is None:
            raise
        # The command still shows in --help, and running it says what to install instead of failing obscurely.
        name = module.rpartition(".")[2].lstrip("_")
        needed = (exc.name or "").partition(".")[0]
        stub = commands.add_parser(name, add_help=False, help=f"(needs {needed}: {hint})")
        stub.set_defaults(missing=f"the {name} command needs {needed}: {hint}")
        return
    loaded.add_parser(commands, common)


def _common_options(*, shown: bool) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    opt = common.add_argument_group("common options")

    def add(*flags: str, text: str, **kw: Any) -> None:
        # SUPPRESS as default: an option given after the subcommand must not be reset by the subparser's default.
        opt.add_argument(*flags, default=argparse.SUPPRESS, help=text if shown else argparse.SUPPRESS, **kw)

    add("--json", action="store_true", text="machine output: one JSON document per line")
    add("--timeout", type=cmd.positive, metavar="SECONDS", text="limit for each request (default: 30)")
    add("-v", "--verbose", action="count", text="log requests and retries to stderr (-vv: more)")
    add("--username", text="API username (or SIGMA_USERNAME)")
    add("--secret-key", text="API secret key (or SIGMA_SECRET_KEY; better not on the command line)")
    add("--app-id", text="app id (or SIGMA_APP_ID)")
    add("--base-url", metavar="URL", text="API base URL (or SIGMA_BASE_URL; default: https://api.sigma.video)")
    add("--env-file", metavar="PATH", text="read the SIGMA_* settings from a .env file")
    add("--allow-insecure-http", action="store_true",
        text="allow a plain http:// base URL that is not loopback (credentials then travel in clear)")
    return common


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 failed, 2 usage, 130 interrupted)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before the event loop runs (reading an env file, importing the emulator, ...): quiet too.
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "missing", None):
        Output().error(args.missing)
        return EXIT_FAILED
    if args.command == "emulator":
        from ..testing import main as emulator_main

        return emulator_main(extra, prog="sigma-async emulator")
    if extra:
        # The command's own parser, when there is one: its usage names the options that command takes.
        (getattr(args, "subparser", None) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "watch" and bool(args.session_id) == bool(args.channel):
        args.subparser.error("give a SESSION, or --channel CHANNEL (not both)")
    if args.command == "watch" and args.since and args.channel:
        args.subparser.error("--since resumes one session: it does not go with --channel")
    if args.command == "watch" and args.playback and args.session_id and "@" not in args.session_id:
        args.subparser.error("--playback needs the session's channel: give SESSION@CHANNEL (the API cannot tell it)")
    _set_logging(getattr(args, "verbose", 0))
    _tolerate_any_encoding()
    out = Output(json_mode=getattr(args, "json", False))
    secrets = _known_secrets(args)
    try:
        # Built before the event loop runs: reading an env file blocks, and a Ctrl-C there must still stop it.
        client = None if args.command == "demo" else _client_from(args)
        if client is not None:
            secrets.extend(client.credentials.secrets())
        return asyncio.run(_run(args, client, out))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report(sole_exception(exc), out, secrets)


def _report(exc: BaseException, out: Output, secrets: list[str]) -> int:
    """Say what went wrong in one line of stderr, and choose the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        # The reader went away (`... | head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    if isinstance(exc, SigmaError):
        out.error(describe_error(exc, secrets))
        return EXIT_FAILED
    if isinstance(exc, (cmd.UsageError, ValueError, TypeError)):
        # The SDK checks arguments (ids, names, URLs, credentials) before sending anything: a usage error.
        out.error(describe_error(exc, secrets, with_type=False))
        return EXIT_USAGE
    logging.getLogger("sigma_async").debug("unexpected failure", exc_info=exc)
    out.error("unexpected " + describe_error(exc, secrets) + " (run with -vv for details)")
    return EXIT_FAILED


async def _run(args: argparse.Namespace, client: SigmaClient | None, out: Output) -> int:
    if client is None:
        from ._demo import run_demo

        return await run_demo(out, channels=args.channels, speed=args.speed)
    async with client:
        handler: Handler = args.handler
        return await handler(client, args, out)


def _client_from(args: argparse.Namespace) -> SigmaClient:
    env_file = getattr(args, "env_file", None)
    overrides = {
        name: getattr(args, name, None) for name in ("username", "secret_key", "app_id", "base_url", "timeout")
    }
    if getattr(args, "allow_insecure_http", False):
        overrides["allow_insecure_http"] = True
    client_class: type[SigmaClient] = getattr(args, "client_class", SigmaClient)
    try:
        return client_class.from_env(env_file, **overrides)
    except OSError as exc:
        raise cmd.UsageError(f"cannot read env file {env_file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        # The SDK's messages name its arguments; here the user passed flags.
        raise cmd.UsageError(str(exc).replace("allow_insecure_http=True", "--allow-insecure-http")) from None


def _known_secrets(args: argparse.Namespace) -> list[str]:
    """Values that must not appear in anything printed, whatever message carries them."""
    found = [getattr(args, "secret_key", None), getattr(args, "s3_secret_key", None)]
    found += [os.environ.get("SIGMA_SECRET_KEY"), os.environ.get(cmd.S3_SECRET_ENV)]
    return [s for s in found if s]


def _set_logging(verbosity: int) -> None:
    if not verbosity:
        return
    logger = logging.getLogger("sigma_async")
    if not any(h.get_name() == "sigma-async-cli" for h in logger.handlers):  # main() may run twice in a process
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("sigma-async-cli")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def _tolerate_any_encoding() -> None:
    # Server messages are often Vietnamese; a terminal or pipe in ASCII must not turn them into a crash.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")

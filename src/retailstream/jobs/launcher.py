"""What every command's and job's `main(argv)` shares: flags, config, the session, errors.

A job or an in-session command (`jobs/spec.py`) launches as `Job.main`, which
calls `launch` with its `run_with`; `produce` and `demo`, which need no session,
call `launch_without_spark` with their own `run(args)`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from pyspark.sql import SparkSession

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError

PROG = "retailstream"
T = TypeVar("T")


def add_common_flags(parser: argparse.ArgumentParser, suppress_defaults: bool = False) -> None:
    """--env, --set and --verbose; with `suppress_defaults` a subcommand may repeat them."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress_defaults else value

    parser.add_argument(
        "--env", default=default(None), help="config env: conf/<ENV>/ (default: dev)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        default=default([]),
        help="override a config key, e.g. --set spark.master=local[2] (repeatable)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="show stack traces"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Py4J wraps the Java exception; its message starts after "An error occurred ...:\n".
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith("An error occurred while calling"):
            return line[:400]
    return type(exc).__name__


@contextmanager
def user_errors(verbose: bool, exit_codes: list[int]) -> Iterator[None]:
    """Turn failures into one line on stderr (stack trace only with --verbose).

    The exit code lands in `exit_codes[0]`: 2 for a user error, 1 for anything
    unexpected, 130 for Ctrl-C.
    """
    try:
        yield
    except UserError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        exit_codes[0] = 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        exit_codes[0] = 130
    except Exception as exc:  # noqa: BLE001 - the edge where everything is reported
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (rerun with --verbose for the stack trace)"
        print(f"{PROG}: error: {type(exc).__name__}: {_first_line(exc)}{hint}", file=sys.stderr)
        exit_codes[0] = 1


def guarded(verbose: bool, action: Callable[[], int | None]) -> int:
    """Run `action` under `user_errors`; return the process exit code."""
    codes = [0]
    with user_errors(verbose, codes):
        result = action()
        if result:
            codes[0] = result
    return codes[0]


def launch(
    description: str,
    run: Callable[[SparkSession, Settings, argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
    prog: str | None = None,
) -> int:
    """Parse flags, load config, build the session and call `run`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_common_flags(parser)
    if add_flags:
        add_flags(parser)
    args = parser.parse_args(argv)
    return guarded(args.verbose, lambda: with_session(run, args))


def launch_without_spark(
    description: str,
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
    add_flags: Callable[[argparse.ArgumentParser], None],
    prog: str,
) -> int:
    """Parse the common flags and the command's own, then call `run(args)` (no SparkSession)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_common_flags(parser)
    add_flags(parser)
    args = parser.parse_args(argv)
    return guarded(args.verbose, lambda: run(args))


def with_session(
    run: Callable[[SparkSession, Settings, argparse.Namespace], int | None],
    args: argparse.Namespace,
) -> int | None:
    """Load config from the common flags in `args`, build the session, call `run`."""
    from retailstream.health.progress import reporting
    from retailstream.session import build_spark

    settings = load_settings(args.env, args.overrides)
    spark = build_spark(settings)
    with reporting(spark, settings):  # what `retailstream status` and /metrics read
        return run(spark, settings, args)


def iso_time(text: str) -> datetime:
    """An ISO 8601 time for a flag; naive times are UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

"""The `histfs` command line: parse, call the command, map what it raises
to a one-line message and an exit status.

The commands live in histfs/commands_*.py and import the packages they
need inside each handler, so `histfs backup` never loads the FUSE code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator

from histfs import log
from histfs.exit_status import EXIT_FAILED
from histfs.parser import build_parser
from index.errors import HistfsError

__all__ = ["build_parser", "main"]


def _die(message: str) -> int:
    log.error(message)
    return EXIT_FAILED


@contextlib.contextmanager
def _broken_pipe_ok() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _parse(argv: list[str]) -> argparse.Namespace:
    """The arguments, also of a call by mount.fuse for an fstab line of type
    fuse.histfs; raises HistfsError."""
    from histfs.completion import commands_of
    from histfs.fstab import is_helper_call, mount_arguments

    parser = build_parser()
    if is_helper_call(argv, set(commands_of(parser))):
        argv = mount_arguments(argv)
    args = parser.parse_args(argv)
    if "config" in vars(args) and not args.config:
        # As borgmatic's and restic's environment variables: what the option
        # would say, for every command that reads a configuration file.
        args.config = os.environ.get("HISTFS_CONFIG") or None
    return args


def _configure_output(args: argparse.Namespace) -> None:
    """Logging and stdout as --quiet and --log-file ask; raises HistfsError.

    `histfs --quiet backup` and `histfs backup --quiet` are one thing, and
    so are the two places of --log-file."""
    quiet = args.global_quiet or getattr(args, "quiet", False)
    log_file = args.global_log_file or getattr(args, "command_log_file", None)
    if args.global_log_file and getattr(args, "command_log_file", None) not in (
            None, args.global_log_file):
        raise HistfsError("--log-file is given twice, with different files")
    try:
        log.configure(log_file, quiet)
    except OSError as exc:
        raise HistfsError(f"cannot open the log file {log_file}: {exc.strerror}") from None
    if quiet:
        if hasattr(args, "quiet"):
            args.quiet = True
        if not getattr(args, "json", False):
            # Summaries go to stdout: nothing there for cron to mail. JSON
            # was asked for by name, and is kept.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the whole run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `histfs` command."""
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        _configure_output(args)
    except HistfsError as exc:
        return _die(str(exc))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _broken_pipe_ok():
            return func(args)
    except HistfsError as exc:
        return _die(str(exc))
    except KeyboardInterrupt:
        return _die("interrupted")
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return _die(f"{exc.strerror or exc}{where}")
    except Exception as exc:
        # A bug. Python would exit with 1, which means "finished with
        # warnings" here: a run that broke must still count as failed.
        traceback.print_exc()
        return _die(f"unexpected error: {exc!r}")


if __name__ == "__main__":
    sys.exit(main())

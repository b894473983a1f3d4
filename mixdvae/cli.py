"""What every command-line tool shares: the error guard, exit codes and argument-parser set-up.

A tool is a module of ``tools/`` (installed as ``mixdvae.tools``) with ``main(argv=None) -> int`` wrapped by
:func:`guarded`; it runs as ``python tools/NAME.py`` and as the console script ``mixdvae-NAME``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from mixdvae.errors import EXIT_CODES_HELP, EXIT_NOT_FOUND, MixDVAEError


def fail(message: str, code: int) -> int:
    """Print ``error: message`` on stderr and return ``code`` (for a tool's ``return fail(...)``)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def guarded(main):
    """Wrap a tool's ``main(argv)``: input errors (:class:`mixdvae.errors.MixDVAEError`, and a file the
    operating system cannot find) become one line on stderr and their exit code; any other exception is a
    bug and keeps its traceback."""

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        try:
            return main(argv)
        except MixDVAEError as err:
            return fail(str(err), err.exit_code)
        except FileNotFoundError as err:  # open() of a path given on the command line
            return fail(f"{err.filename or ''}: {err.strerror or err}".lstrip(": "), EXIT_NOT_FOUND)

    return wrapper


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser showing the tool's module docstring (its examples) and the exit codes."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=EXIT_CODES_HELP)


def add_audio_run_options(ap: argparse.ArgumentParser, demo_help: str) -> None:
    """The options the audio tools (``enhance.py``, ``separate.py``) share: ``--seed``, ``--device``,
    ``--threads``, ``--json``, ``--demo`` (described by ``demo_help``) and ``--no-progress``."""
    ap.add_argument("--seed", type=int, default=0, help="seed of the VEM's random draws (default 0)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the VEM's small per-frame steps do not gain from more)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the per-file results and metrics as JSON")
    ap.add_argument("--demo", action="store_true", help=demo_help)
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")

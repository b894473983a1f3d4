"""What every command-line tool shares: the error guard, exit codes and argument-parser set-up.

A tool is a module of ``tools/`` (installed as ``mixdvae.tools``) with ``main(argv=None) -> int`` wrapped by
:func:`guarded`; it runs as ``python tools/NAME.py`` and as the console script ``mixdvae-NAME``.
"""

from __future__ import annotations

import argparse
import functools
import sys

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

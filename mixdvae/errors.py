"""The errors a user can cause, and the exit code each one means for the command-line tools.

Bad input (a file, a config key, a checkpoint, an argument given through the API) raises one of the classes
below with a message that names the file (and line or key) and the problem; :func:`mixdvae.cli.guarded` turns
them into one line on stderr and the documented exit code. Anything else is a programming error and keeps
its traceback.

Exit codes: 0 success; 2 bad command line (argparse's own code); 3 data or file not found; 4 malformed
input (file, config, checkpoint, audio, detections).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BAD_INPUT = 4
EXIT_CODES_HELP = (
    "exit codes: 0 success; 2 bad command line; 3 data or file not found; "
    "4 malformed input (file, config, checkpoint, audio; the message names the file and line or key)"
)


class MixDVAEError(Exception):
    """Base of the errors caused by input rather than by a bug; ``exit_code`` is the tools' exit status."""

    exit_code = EXIT_BAD_INPUT


class UsageError(MixDVAEError, ValueError):
    """A command-line option or API argument that cannot work (e.g. ``--device cuda`` without CUDA)."""

    exit_code = EXIT_USAGE


class DataNotFoundError(MixDVAEError, FileNotFoundError):
    """A file, folder, sequence or shipped resource that does not exist; the message says where to put it."""

    exit_code = EXIT_NOT_FOUND


class InputError(MixDVAEError, ValueError):
    """Malformed input: the message names the file (and line or key) and what is wrong with it."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(InputError):
    """A configuration (YAML file, dict or keyword arguments) with an unknown key or a bad value."""

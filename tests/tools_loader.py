"""Import a command-line tool of ``tools/`` (the installed package ``mixdvae.tools``), so tests call its
``main(argv)`` in-process."""

import importlib


def load_tool(name: str):
    return importlib.import_module(f"mixdvae.tools.{name}")

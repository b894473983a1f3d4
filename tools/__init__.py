"""The command-line tools (``python tools/NAME.py`` in a checkout, ``mixdvae-NAME`` once installed)."""

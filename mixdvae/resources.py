"""Where the shipped files live, in a source checkout and in an installed package alike.

The repository keeps its layout (``configs/``, ``data/priors/``, ``trackers/``, ``tools/`` at the top);
``pyproject.toml`` installs those folders as the packages ``mixdvae.configs``, ``mixdvae.priors``,
``mixdvae.trackers`` and ``mixdvae.tools``, so every shipped file is found through :mod:`importlib.resources`
whether the package is installed editable or not, from any working directory.

Generated data (the synthetic benchmark) goes to ``data/`` of a source checkout, else to the user's cache
folder (``$XDG_CACHE_HOME/mixdvae`` or ``~/.cache/mixdvae``); ``MIXDVAE_DATA`` overrides both.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from mixdvae.errors import DataNotFoundError

PACKAGE_ROOT = Path(__file__).resolve().parent
CHECKOUT_ROOT = PACKAGE_ROOT.parent if (PACKAGE_ROOT.parent / "pyproject.toml").is_file() else None


def shipped_dir(kind: str) -> Path:
    """The folder of a kind of shipped file: ``"configs"``, ``"priors"`` or ``"audio_demo"``."""
    return Path(str(resources.files(f"mixdvae.{kind}")))


def shipped_file(kind: str, name: str) -> Path:
    """A shipped file by kind and file name; :class:`~mixdvae.errors.DataNotFoundError` listing the others."""
    path = shipped_dir(kind) / name
    if not path.is_file():
        present = sorted(p.name for p in shipped_dir(kind).iterdir() if not p.name.startswith(("_", ".")))
        raise DataNotFoundError(f"no shipped {kind} file {name!r} (in {path.parent}); shipped: {present}")
    return path


def config_file(name: str) -> Path:
    """A shipped YAML configuration by name: ``config_file("sort")`` is ``configs/sort.yaml``."""
    return shipped_file("configs", name if name.endswith(".yaml") else f"{name}.yaml")


def data_home() -> Path:
    """Writable folder for generated data: ``$MIXDVAE_DATA``, else ``data/`` of a checkout, else the cache."""
    if os.environ.get("MIXDVAE_DATA"):
        return Path(os.environ["MIXDVAE_DATA"])
    if CHECKOUT_ROOT is not None:
        return CHECKOUT_ROOT / "data"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mixdvae"


def shared_data(*parts: str) -> Path:
    """Evaluation material read in place from ``../shared/data`` beside a checkout (``MIXDVAE_SHARED`` overrides);
    the path may not exist: callers skip or explain."""
    base = os.environ.get("MIXDVAE_SHARED")
    if base is None:
        base = (CHECKOUT_ROOT or Path.cwd()).parent / "shared" / "data"
    return Path(base).joinpath(*parts)

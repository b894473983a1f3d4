"""The package as a user gets it: the README's API snippet runs, a built wheel installs only ``mixdvae`` and finds
its shipped files from any folder, and the code passes the linter configured in pyproject.toml."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_api_snippet_runs_as_written(mot15_root, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # the snippet's paths are relative to the repository, as a reader runs it
    blocks = [b for b in readme_python_blocks() if "make_tracker" in b]
    assert blocks, "the README lost its API snippet"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["results"].shape[1] == 6 and len(namespace["rest"]) > 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here (needs setuptools from the package index): {build.stderr[-300:]}")
    return next(out.glob("mixdvae-*.whl"))


def test_the_wheel_installs_nothing_beside_mixdvae_and_ships_its_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"mixdvae"}  # no top-level trackers/, tools/, configs/ to clash with other packages
    for shipped in ("mixdvae/priors/srnn_mot.pt", "mixdvae/configs/sort.yaml", "mixdvae/trackers/vem.py",
                    "mixdvae/tools/track.py"):
        assert shipped in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mixdvae-track = mixdvae.tools.track:main" in entry_points


def test_an_installed_copy_works_from_another_folder(wheel, tmp_path):
    """Installed (not editable) into a folder of its own and run from elsewhere: the shipped prior and configs
    load, generated data goes to MIXDVAE_DATA, and a tracker runs."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    script = (
        "import mixdvae, mixdvae.trackers as t; from mixdvae.dvae import load_prior;"
        "from mixdvae.resources import config_file; from mixdvae.runner import DEFAULT_DATA_ROOT;"
        "print(mixdvae.__file__); load_prior('srnn_mot'); print(config_file('sort')); print(DEFAULT_DATA_ROOT);"
        "t.make_tracker('kalman', 'sort')"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "MIXDVAE_DATA": str(tmp_path / "data")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -I would drop PYTHONPATH; -P keeps the working folder off sys.path and -s skips the editable install's .pth
    run = subprocess.run([sys.executable, "-s", "-c", script], cwd=elsewhere, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    package, config, data = run.stdout.split()
    assert package.startswith(str(target)) and config.startswith(str(target))
    assert data == str(tmp_path / "data" / "synthetic" / "train")


def test_code_passes_the_linter():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    run = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]

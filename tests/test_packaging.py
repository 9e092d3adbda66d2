"""A wheel built from the repository carries the shipped PHAE weights and finds them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import perfmap

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("phae_dsc.pt", "phae_dsc.json", "denoise_dae.pt", "denoise_dae.json", "denoise_cae.pt",
           "denoise_cae.json", "README.md")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build a wheel from a clean copy of the sources (no build isolation: offline)."""
    pytest.importorskip("setuptools")
    if not (ROOT / "models" / "phae_dsc.pt").is_file():
        pytest.skip("shipped weights not present in this checkout")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "perfmap", src / "perfmap", ignore=ignore)
    shutil.copytree(ROOT / "models", src / "models", ignore=ignore)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"cannot build wheels here: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr
    (whl,) = (tmp / "dist").glob("perfmap-*.whl")
    return whl


def test_wheel_contains_the_weights_unchanged(wheel):
    prefix = f"perfmap-{perfmap.__version__}.data/data/share/perfmap/models/"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in SHIPPED:
            assert prefix + name in names
            assert _sha(zf.read(prefix + name)) == _sha((ROOT / "models" / name).read_bytes())


def test_installed_wheel_finds_the_weights(wheel, tmp_path):
    """Installed into a fresh environment (no source checkout), the default path resolves."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    # The new environment's own pip: ``pip install --prefix`` from this one would first
    # uninstall this environment's perfmap.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    code = ("import perfmap.neural.weights as w, pathlib; "
            "p = w.default_model_path(); print(p); print(pathlib.Path(w.__file__))")
    # NumPy from this environment; perfmap itself from the new one (PYTHONPATH holds no
    # .pth files, so this environment's editable perfmap is not visible there).
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": sysconfig.get_path("purelib")}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    found, module = (Path(line) for line in res.stdout.split())
    assert module.is_relative_to(env.resolve()) or module.is_relative_to(env)
    assert found.is_file() and found.parts[-4:] == ("share", "perfmap", "models",
                                                    "phae_dsc.pt")
    assert _sha(found.read_bytes()) == _sha((ROOT / "models" / "phae_dsc.pt").read_bytes())

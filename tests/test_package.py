"""The installable package: the wheel `pip install .` builds holds the code, the experiment configs, both shipped
vocabularies and the `lightning-electra` command, and pyproject.toml's dependency ranges are requirements.txt's.
Builds a wheel from a copy of the sources (so the checkout gets no build/ folder): about 3 s on 2 cores."""

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    return {re.split(r"[<>=!~ \[]", ln, maxsplit=1)[0].lower(): ln for ln in lines if ln}


def test_dependencies_match_requirements_txt():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    named = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower(): d for d in declared}
    wanted = _requirements()
    assert {k: named.get(k) for k in wanted} == wanted, "pyproject.toml's ranges differ from requirements.txt's"
    assert set(wanted) - {"pytest", "pytest-timeout"} == {k for k in (re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower()
                                                    for d in project["dependencies"])}
    assert set(project["optional-dependencies"]) >= {"wandb", "dev"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: the wheel is built without build isolation (offline)")
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "reports")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("lightning_electra", "analysis"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, cwd=src)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("lightning_electra-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_configs_and_vocabularies(wheel):
    names = set(wheel.namelist())
    configs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lightning_electra" / "configs").rglob("*.yaml")}
    assert {c.split("/")[2] for c in configs} == {"scales", "variants", "sweeps"}
    assert configs <= names, sorted(configs - names)
    vocabs = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lightning_electra" / "data").glob("*-vocab.txt")}
    assert len(vocabs) >= 2 and vocabs <= names, sorted(vocabs - names)
    assert {"lightning_electra/cli.py", "analysis/report.py", "analysis/paper/paper_results.csv"} <= names
    assert not any("/reports/" in n for n in names), "committed reports are not package data"


def test_wheel_has_the_console_script(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert re.search(r"^lightning-electra\s*=\s*lightning_electra\.cli:run$", text, re.M), text

"""The release's statements hold: the changelog's latest entry is the package's version, and the supported
Airflow and Python are the ones the files pin and this interpreter runs."""

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
CHANGELOG = (REPO / "CHANGELOG.md").read_text()
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_latest_changelog_entry_is_the_packages_version():
    entries = re.findall(r"^## (\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)$", CHANGELOG, re.MULTILINE)
    assert entries and entries[0] == PROJECT["version"]
    assert entries == sorted(entries, key=lambda v: tuple(map(int, v.split("."))), reverse=True)


def test_the_supported_airflow_is_the_one_pinned_and_installed():
    stated = re.search(r"Supported: Apache Airflow (\d+\.\d+) \(tested\s+with (\d+\.\d+\.\d+)", CHANGELOG)
    assert stated, "CHANGELOG.md states the supported Airflow"
    minor, tested = stated.groups()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and pinned.group(1) == tested and tested.startswith(f"{minor}.")
    assert version("apache-airflow") == tested


def test_the_supported_python_is_the_one_declared_and_running():
    stated = re.search(r"Python (\d+\.\d+) \(what CI and\s+the image run", CHANGELOG)
    assert stated, "CHANGELOG.md states the supported Python"
    assert PROJECT["requires-python"] == f">={stated.group(1)}"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in SpecifierSet(PROJECT["requires-python"])
    assert f"python{stated.group(1)}" in (REPO / "Dockerfile").read_text()

"""Package discovery for the wheel: every package below pgflow/ and cli/ (installed as
pgflow.cli) is found, never listed, and every file beside the code ships with it.

pyproject.toml holds the metadata; this file only says where the packages are, because the
CLI's folder and the SQL folder map into the import package (DESIGN: no top-level `cli` in
site-packages) and setuptools' declarative `packages.find` cannot combine with that map."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent
# import package -> folder, for the folders that are not named like their package
MAPPED = {"pgflow.cli": "cli", "pgflow.sql": "sql"}
NOT_DATA = {".py", ".pyc", ".pyo"}


def find(root: str) -> list[str]:
    """Every folder below `root` as a package: code and data folders alike."""
    return [root, *find_namespace_packages(HERE / root, exclude=["*__pycache__*"])]


def packages() -> dict[str, Path]:
    """Every package and its folder."""
    found: dict[str, Path] = {}
    for package, folder in {"pgflow": "pgflow", **MAPPED}.items():
        for name in find(folder):
            sub = name[len(folder) :] if name == folder else "." + name
            found[package + sub] = HERE / folder / sub.lstrip(".").replace(".", "/")
    return found


def package_data(folder: Path) -> list[str]:
    """The files of a package's own folder that are not code."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in NOT_DATA)


found = packages()
setup(
    packages=sorted(found),
    package_dir={name: str(path.relative_to(HERE)) for name, path in found.items()},
    package_data={name: package_data(path) for name, path in found.items()},
)

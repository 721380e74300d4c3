"""The wheel carries every package: a user's `pip install .` must get what the checkout's tests import."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_vmexit_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vmexit").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject's packages: {sorted(found - listed)}"
    data_dirs = {"vmexit.profiles": "vmexit/profiles", "vmexit.data": "vmexit/data"}
    for package, directory in data_dirs.items():
        assert package in listed and any((ROOT / directory).glob("*.json"))


def test_every_guest_directory_is_packaged():
    """Each directory of guest sources (guests/, guests/lib, a scenario's guests/xennet...) goes into the
    wheel as a vmexit._guests package with its sources; guests/bench belongs to tools/bench.py, which
    runs from a checkout."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {p.parent for p in (ROOT / "guests").rglob("*.S")} - {ROOT / "guests" / "bench"}
    for d in dirs:
        package = ".".join(("vmexit", "_guests") + d.relative_to(ROOT / "guests").parts)
        assert package in config["packages"], f"{package} is not in pyproject's packages"
        assert config["package-dir"].get(package, "guests") == str(d.relative_to(ROOT)), package
        assert "*.S" in config["package-data"][package], package

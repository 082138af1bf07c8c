"""The Hugging Face Spaces build: what the builder runs must resolve, and agree with our pins.

The Spaces builder copies `requirements.txt` alone into an empty folder and runs

    pip install -r requirements.txt "gradio[oauth,mcp]==<sdk_version>" "uvicorn>=0.14.0" \
        "websockets>=10.4" spaces

before the rest of the repository is there. So requirements.txt must name no other file (a `-c`
line fails with "Could not open constraint file"), and constraints.txt, which setup.sh, the
Dockerfile and CI apply, must be compiled with gradio at the card's sdk_version and its extras
(else a pin such as pydantic contradicts gradio[mcp]: ResolutionImpossible).

The two resolver tests need PyPI: without it they skip, unless VDR_REQUIRE_NETWORK=1 (set by CI),
where they fail.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BUILDER_EXTRAS = ("oauth", "mcp")


def card_header() -> dict[str, str]:
    """The README's YAML header (the Space card), as flat `key: value` pairs."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines and lines[0] == "---", "README.md must start with the Space card's YAML header"
    header = {}
    for line in lines[1:lines.index("---", 1)]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "-")):
            header[key.strip()] = value.strip().strip("\"'")
    return header


def sdk_version() -> str:
    return card_header()["sdk_version"]


def builder_command(python: str = sys.executable) -> list[str]:
    """The Spaces builder's install, as a pip dry run that ignores what this venv has."""
    return [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--disable-pip-version-check", "-r", "requirements.txt",
            f"gradio[{','.join(BUILDER_EXTRAS)}]=={sdk_version()}", "uvicorn>=0.14.0", "websockets>=10.4", "spaces"]


def pins() -> dict[str, str]:
    """constraints.txt as {normalised name: version}, the lines whose markers hold here."""
    out = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        pin, _, marker = line.split("#", 1)[0].partition(";")
        if pin.strip() and (not marker.strip() or Marker(marker).evaluate()):
            name, _, version = pin.partition("==")
            out[_norm(name)] = version.strip()
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


# ------------------------------------------------------------------------------------ offline
def test_requirements_name_no_other_file():
    """The builder has only requirements.txt: a -c / -r line (or its long form) breaks the build."""
    for number, line in enumerate((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        assert not re.match(r"-[cre]\b|--(constraint|requirement|editable)\b", text), (
            f"requirements.txt line {number} names another file ({text!r}): the Spaces builder copies "
            "requirements.txt alone; apply constraints.txt through PIP_CONSTRAINT or -c on the command line")


def test_constraints_pin_gradio_at_the_cards_sdk_version():
    version = pins().get("gradio")
    assert version == sdk_version(), (
        f"README's sdk_version is {sdk_version()} but constraints.txt pins gradio=={version}: "
        "run ./scripts/compile-constraints.sh")
    assert "spaces" in pins(), "constraints.txt was not compiled with spaces: run ./scripts/compile-constraints.sh"


def test_constraints_satisfy_gradio_and_its_builder_extras():
    """gradio's own requirements, with the extras the builder asks for, hold for every pin
    (the failure the builder met: gradio[mcp] wants pydantic<=2.12.5, a pin said 2.14.4)."""
    try:
        installed = importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gradio is not installed here")
    if installed != sdk_version():
        pytest.skip(f"gradio {installed} is installed, not the card's {sdk_version()}: its requirements may differ")
    pinned = pins()
    broken = []
    for text in importlib.metadata.requires("gradio") or []:
        requirement = Requirement(text)
        marker = requirement.marker  # an extra the builder does not ask for, or another platform: skip
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in ("", *BUILDER_EXTRAS)):
            continue
        version = pinned.get(_norm(requirement.name))
        if version is None:
            broken.append(f"{requirement} (not in constraints.txt)")
        elif not requirement.specifier.contains(version, prereleases=True):
            broken.append(f"{requirement} (constraints.txt pins {version})")
    assert not broken, "constraints.txt contradicts gradio[" + ",".join(BUILDER_EXTRAS) + "]: " + "; ".join(broken)


# ------------------------------------------------------------------------------------ network
def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return None
    except OSError as error:
        return f"PyPI is not reachable ({error})"


@pytest.fixture(scope="module")
def pypi():
    problem = _pypi_reachable()
    if problem:
        if os.environ.get("VDR_REQUIRE_NETWORK") == "1":
            pytest.fail(f"{problem}, and VDR_REQUIRE_NETWORK=1 says the Space build check must run")
        pytest.skip(f"{problem}: the Space build check needs PyPI (CI sets VDR_REQUIRE_NETWORK=1)")


def _dry_run(folder: Path, constraints: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_CONSTRAINT", "PIP_REQUIRE"))}
    if constraints is not None:
        env["PIP_CONSTRAINT"] = str(constraints)
    report = folder / "report.json"
    command = builder_command() + ["--report", str(report)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("WARNING:")]
    assert done.returncode == 0, "the Spaces builder's install fails:\n" + "\n".join(errors[-30:])
    installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {_norm(item["metadata"]["name"]): item["metadata"]["version"] for item in installed}


def test_space_builder_command_resolves_in_an_empty_folder(pypi, tmp_path):
    """The builder's exact command, in a folder holding only requirements.txt."""
    (tmp_path / "requirements.txt").write_bytes((ROOT / "requirements.txt").read_bytes())
    resolved = _dry_run(tmp_path)
    assert resolved["gradio"] == sdk_version()
    assert resolved["torch"].split("+")[0] == pins()["torch"] and "spaces" in resolved and "mcp" in resolved


def test_space_builder_command_resolves_under_our_constraints(pypi, tmp_path):
    """The same install with constraints.txt applied (what setup.sh, the Dockerfile and CI do) —
    fails when a pin contradicts what the builder adds."""
    (tmp_path / "requirements.txt").write_bytes((ROOT / "requirements.txt").read_bytes())
    resolved = _dry_run(tmp_path, constraints=ROOT / "constraints.txt")
    pinned = pins()
    differ = {name: (version, pinned[name]) for name, version in resolved.items()
              if name in pinned and version.split("+")[0] != pinned[name]}
    assert not differ, f"resolved versions differ from constraints.txt: {differ}"

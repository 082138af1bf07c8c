"""The documentation site builds strictly (a broken link, a missing page or image, an unknown anchor,
a page outside the nav or an undocumented setting fails), and its generated references hold every
setting, every CLI command and every strategy. The README's links lead to files that exist."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def _text(site: Path, page: str) -> str:
    """A built page's text, tags dropped and entities decoded."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_every_setting_is_in_the_configuration_reference(site):
    from vdr_app.config import Settings

    text = _text(site, "configuration")
    source = (ROOT / "vdr_app" / "config.py").read_text()
    for field in dataclasses.fields(Settings):
        assert field.name in text, f"Settings.{field.name} missing from the configuration page"
    for variable in set(re.findall(r'"(VDR_[A-Z0-9_]+)"', source)):
        assert variable in text, f"{variable} (read in config.py) missing from the configuration page"


def test_every_cli_command_is_in_the_cli_reference(site):
    from vdr_app.cli import build_parser

    text = _text(site, "cli")

    def commands(parser, path=()):
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    yield " ".join((*path, name)), sub
                    yield from commands(sub, (*path, name))

    found = list(commands(build_parser()))
    assert len(found) >= 12
    for path, parser in found:
        assert f"python -m vdr_app {path}" in text, f"command {path!r} missing from the CLI page"
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{path} {option} missing from the CLI page"


def test_every_strategy_is_in_the_strategies_page(site):
    from vdr_app.reduce import describe_strategies

    text = _text(site, "strategies")
    for strategy in describe_strategies():
        assert strategy["example"] in text, strategy["name"]


def test_readme_links_lead_to_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\ntitle:"), "the Space card's YAML header must stay at the top"
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+://", link) and not link.startswith("#")]
    assert local, "the README links to no page"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"

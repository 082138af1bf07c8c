"""Settings from the environment: defaults, parsing, and one clear line for every bad value."""

import subprocess
import sys
from pathlib import Path

import pytest

from vdr_app.config import Settings
from vdr_app.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_unset_and_blank_variables_keep_the_defaults():
    defaults = Settings()
    for env in ({}, {"VDR_DPI": "", "VDR_MAX_PAGES": "  ", "VDR_DEVICE": ""}):
        settings = Settings.from_env(env)
        assert (settings.dpi, settings.max_pages, settings.device) == (defaults.dpi, defaults.max_pages, "auto")


def test_values_are_parsed_into_their_types():
    env = {
        "VDR_DPI": "150", "VDR_MAX_PAGES": "12", "VDR_MAX_UPLOAD_MB": "2.5", "VDR_DEVICE": "cuda:1",
        "VDR_PORT": "8080", "VDR_BATCH_SIZE": "8", "VDR_FALLBACK_MODEL": "", "VDR_MODEL": " /models/x ",
    }
    s = Settings.from_env(env)
    assert (s.dpi, s.max_pages, s.max_upload_mb, s.device, s.port, s.batch_size) == (150, 12, 2.5, "cuda:1", 8080, 8)
    assert s.fallback_model == "" and s.model == "/models/x"
    assert Settings.from_env({"PORT": "7861"}).port == 7861  # the Spaces variable, when VDR_PORT is unset


def test_batch_size_defaults_to_chosen_per_device():
    # 0 = "choose" (models.resources.choose_batch_size): 1 page per forward on CPU, by memory on CUDA.
    assert Settings().batch_size == 0
    assert Settings().dtype == "auto" and Settings.from_env({"VDR_DTYPE": "bfloat16"}).dtype == "bfloat16"
    assert Settings.from_env({"VDR_BATCH_SIZE": "0"}).batch_size == 0
    with pytest.raises(ConfigError, match="VDR_BATCH_SIZE='-1'.*from 0 to"):
        Settings.from_env({"VDR_BATCH_SIZE": "-1"})


@pytest.mark.parametrize(
    "name, value, allowed",
    [
        ("VDR_DPI", "0", "from 30 to 600"),
        ("VDR_DPI", "abc", "whole number"),
        ("VDR_DPI", "1e3", "whole number"),
        ("VDR_MAX_PAGES", "-5", "from 1 to 100,000"),
        ("VDR_MAX_UPLOAD_MB", "nan", "number from"),
        ("VDR_MAX_UPLOAD_MB", "0", "number from"),
        ("VDR_BATCH_SIZE", "9" * 5000, "whole number"),
        ("VDR_PORT", "99999", "65,535"),
        ("VDR_DEVICE", "gpu", "auto, cpu, cuda"),
        ("VDR_DTYPE", "int8", "auto, float32, bfloat16 or float16"),
        ("VDR_MODEL", "   ", "must not be empty"),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_range(name, value, allowed):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=") and allowed in message and "\n" not in message
    assert len(message) < 160  # a huge value is shown cut, not echoed whole


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="VDR_DATA_DIR=.*must be a folder"):
        Settings.from_env({"VDR_DATA_DIR": str(a_file)})
    with pytest.raises(ConfigError, match="VDR_STORE=.*must be a file path"):
        Settings.from_env({"VDR_STORE": str(tmp_path)})


@pytest.mark.parametrize("entry", [["app.py"], ["-m", "vdr_app", "list"]])
def test_app_and_cli_stop_at_start_with_the_one_line(entry, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VDR_DPI": "0", "VDR_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, *entry], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "VDR_DPI='0' is not valid: must be a whole number from 30 to 600" in lines[0], run.stderr
    assert not (tmp_path / "data").exists()  # nothing was created before the check

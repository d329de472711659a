"""README's tables come from the declarations, so docs cannot drift from behaviour."""
import re
import subprocess
import sys
from pathlib import Path

from spacehooks import cli, config
from spacehooks.push import sdkcompat, spaceconfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(name):
    match = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", README, re.S)
    assert match, f"README.md has no {name} block"
    return match.group(1)


def test_readme_key_table_is_generated_from_the_schema():
    assert block("schema-table") == spaceconfig.markdown_table()


def test_readme_settings_table_is_generated_from_the_settings():
    assert block("config-table") == config.markdown_table()


def test_readme_sdk_table_is_generated_from_the_rules():
    assert block("sdk-table") == sdkcompat.markdown_table()


def test_readme_test_command_is_what_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README


def test_every_command_has_help_and_is_documented():
    for name, command in cli.cli.commands.items():
        if command.hidden:
            continue
        assert command.help and command.help.strip(), f"{name} has no docstring"
        assert f"spacehooks {name}" in README, f"README does not mention `spacehooks {name}`"
        result = subprocess.run([sys.executable, "-m", "spacehooks", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage:" in result.stdout

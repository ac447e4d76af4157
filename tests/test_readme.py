"""The README names every setting and every command-line option, with its default, and nothing
that does not exist: a setting or a flag added, renamed or re-defaulted fails here until the README
says so."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from app.cli import _parser
from app.settings import Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
_FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def section(heading: str) -> str:
    """The README's text under ``heading``, up to the next heading of the same or a higher level
    (a ``#`` line inside a code block is a shell comment, not a heading)."""
    level = len(heading.split(" ", 1)[0])
    lines: list[str] = []
    inside = fenced = False
    for line in README.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            if inside and len(line) - len(line.lstrip("#")) <= level:
                break
            if line == heading:
                inside = True
                continue
        if inside:
            lines.append(line)
    assert inside, f"the README has no heading {heading!r}"
    return "\n".join(lines)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each table row in ``text``, header and ruler left out."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [row for row in rows if row[0] not in ("variable", "option", "status")]


def says(cell: str, value: object) -> bool:
    """Whether a table cell states ``value`` (thousands separators and backticks aside)."""
    text = cell.replace(",", "").replace("`", "")
    if value is None:
        return text.startswith("unset")
    if value == "":
        return text.startswith("empty")
    if isinstance(value, bool):
        return str(value).lower() in text
    if isinstance(value, float):
        value = f"{value:g}"
    return re.search(rf"(?<![\w.]){re.escape(str(value))}(?!\w)", text) is not None


def byte_size(value: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value % size == 0:
            return f"{value // size} {unit}"
    return str(value)


# status codes -------------------------------------------------------------------------------------


def test_every_status_code_the_api_declares_or_raises_has_a_row(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.web.errors import ENGINE_STATUS

    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as client:
        schema = client.get("/openapi.json").json()
        client.app.state.services.jobs.shutdown(wait=True)  # type: ignore[attr-defined]
    declared = {
        int(code) for path in schema["paths"].values() for op in path.values() for code in op["responses"]
    }
    web = REPO / "app" / "web"
    sources = "".join(f.read_text() for f in sorted(web.rglob("*.py")))
    raised = {int(code) for code in re.findall(r"ApiError\(\s*(\d{3})", sources)}
    mapped = {code for _, code in ENGINE_STATUS}
    documented = {int(row[0]) for row in table_rows(section("### Status codes"))}
    missing = (declared | raised | mapped) - documented
    assert not missing, f"README's status codes lack {sorted(missing)}"


# settings -----------------------------------------------------------------------------------------

SETTINGS = {f"TESSERA_{name.upper()}": field for name, field in Settings.model_fields.items()}


def settings_table() -> dict[str, list[str]]:
    return {row[0].strip("`"): row for row in table_rows(section("### Settings"))}


@pytest.mark.parametrize("variable", sorted(SETTINGS))
def test_every_setting_has_a_row_with_its_default(variable: str) -> None:
    rows = settings_table()
    assert variable in rows, f"README's settings table lacks {variable}"
    _, default, meaning = rows[variable]
    value = SETTINGS[variable].default
    if variable.endswith("_BYTES"):
        value = byte_size(value)
    elif isinstance(value, Path):
        value = value.name
    assert says(default, value), f"{variable}: the README says {default!r}, the default is {value!r}"
    assert meaning, f"{variable} has no meaning in the README"


def test_the_readme_names_no_setting_that_does_not_exist() -> None:
    unknown = set(re.findall(r"\bTESSERA_[A-Z0-9_]*[A-Z0-9]", README)) - set(SETTINGS)
    assert not unknown, f"the README names settings that do not exist: {sorted(unknown)}"
    extra = set(settings_table()) - set(SETTINGS)
    assert not extra, f"the settings table has rows for no setting: {sorted(extra)}"


# the command line ---------------------------------------------------------------------------------


def commands() -> dict[str, argparse.ArgumentParser]:
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def options(command: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in command._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_of_every_command_has_a_row_with_its_default(name: str) -> None:
    rows = table_rows(section(f"### `tessera {name}`"))
    for action in options(commands()[name]):
        flag = max(action.option_strings, key=len)
        row = next((r for r in rows if flag in _FLAG.findall(r[0])), None)
        assert row is not None, f"README's `tessera {name}` tables lack {flag}"
        default = action.default
        if isinstance(default, (int, float, str)) and not isinstance(default, bool):
            assert says(row[-1], default), f"{flag}: the README says {row[-1]!r}, the default is {default!r}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_the_readme_names_no_option_a_command_does_not_have(name: str) -> None:
    known = {flag for action in commands()[name]._actions for flag in action.option_strings}
    unknown = set(_FLAG.findall(section(f"### `tessera {name}`"))) - known
    assert not unknown, f"README's `tessera {name}` names options it does not have: {sorted(unknown)}"

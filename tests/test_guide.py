"""The user guide (docs/, built by `make docs`) kept true to the code: every option of every `aurl` command and
every config key has a line in it, every page is in mkdocs.yml's nav, every measured table names its command
and machine, and the README stays a short front page whose links land on pages that exist.

No MkDocs needed: `make docs` (in CI) builds the site with --strict for broken links and anchors."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from aurl.cli import build_parser
from aurl.config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "commands.md"
README_LIMIT = 8000  # characters (bytes): the README is read in three minutes; the reference lives in docs/


def _pages() -> dict[str, str]:
    return {path.relative_to(DOCS).as_posix(): path.read_text(encoding="utf-8") for path in sorted(DOCS.rglob("*.md"))}


def _mentions(text: str, word: str) -> bool:
    """`word` as a whole word: `--keep` is not found in `--keep-all` or `x--keep`, `train.lr` not in `train.lr_x`."""
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", text) is not None


def _commands() -> dict[str, list[str]]:
    """Each subcommand of `aurl` and its option strings (long and short), -h/--help left out."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: [
            option
            for action in command._actions
            if not isinstance(action, argparse._HelpAction)
            for option in action.option_strings
        ]
        for name, command in sub.choices.items()
    }


def _reference_sections() -> dict[str, str]:
    """The command reference's text under each `## aurl NAME` heading."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", REFERENCE.read_text(encoding="utf-8"), flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        if heading.startswith("aurl "):
            sections[heading.removeprefix("aurl ").strip()] = body
    return sections


def _config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys += _config_keys(kind, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _nav_files(entries) -> list[str]:
    files = []
    for entry in entries:
        if isinstance(entry, str):
            files.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                files += _nav_files(value) if isinstance(value, list) else [value]
    return [f for f in files if not re.match(r"[a-z]+://", f)]


def test_every_cli_option_is_in_the_guide():
    text = "\n".join(_pages().values())
    missing = [
        f"aurl {name} {option}"
        for name, options in _commands().items()
        for option in options
        if not _mentions(text, option)
    ]
    assert not missing, (
        f"options of the aurl CLI that no page of the guide mentions: {', '.join(missing)}. Add each as a row "
        f"of its command's table in docs/commands.md, and a line on the page of that command (docs/*.md)"
    )


def test_every_cli_option_is_in_its_command_reference():
    sections = _reference_sections()
    commands = _commands()
    absent = sorted(set(commands) - set(sections))
    assert not absent, f"docs/commands.md has no '## aurl NAME' section for: {', '.join(absent)}; add one"
    missing = [
        f"aurl {name} {option}"
        for name, options in commands.items()
        for option in options
        if not _mentions(sections[name], option)
    ]
    assert not missing, (
        f"options missing from their command's section of docs/commands.md: {', '.join(missing)}. Add a row "
        f"'| `OPTION ARG` | what it does |' under '## aurl NAME' (the text of its --help will do)"
    )


def test_every_config_key_is_in_the_guide():
    text = "\n".join(_pages().values())
    missing = [key for key in _config_keys() if not _mentions(text, key)]
    assert not missing, (
        f"config keys (aurl/config.py) that no page of the guide names in full: {', '.join(missing)}. Add a row "
        f"'| `section.key` | default | meaning |' to its section's table in docs/configuration.md"
    )


def test_the_nav_lists_every_page_and_only_pages_that_exist():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config.get("docs_dir", "docs") == "docs"
    nav = _nav_files(config["nav"])
    pages = set(_pages())
    gone = [page for page in nav if page not in pages]
    left_out = sorted(pages - set(nav))
    assert not gone, f"mkdocs.yml's nav names pages that docs/ does not hold: {', '.join(gone)}"
    assert not left_out, f"pages in docs/ that mkdocs.yml's nav leaves out (add them to nav): {', '.join(left_out)}"
    assert len(nav) == len(set(nav)), "mkdocs.yml's nav names a page twice"


def test_every_measured_table_names_its_command_and_machine():
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    unnamed = []
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        measured = re.search(r"^\|", body, flags=re.M) or "```" in body
        if measured and not ("**Command:**" in body and "**Machine:**" in body):
            unnamed.append(heading.strip())
    assert not unnamed, (
        f"sections of docs/benchmarks.md whose tables or outputs do not say what printed them and where: "
        f"{', '.join(unnamed)}. Add a '**Command:** ...' and a '**Machine:** ...' line to each"
    )


def test_the_readme_is_short_and_its_guide_links_land():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= README_LIMIT, (
        f"README.md is {len(readme)} characters, over {README_LIMIT}: move the detail into a page of docs/ "
        f"and link to it"
    )
    links = re.findall(r"\]\((docs/[^)#\s]+)", readme.decode("utf-8"))
    assert links, "README.md links to no page of the guide (docs/...)"
    broken = [link for link in links if not (ROOT / link).is_file()]
    assert not broken, f"README.md links to files that do not exist: {', '.join(broken)}"

"""The documentation holds together: every relative link in README.md and docs/ leads to a file
(and a heading) that exists, every docs page is reachable from the README, every option and
environment setting is documented, and nothing in the repository cites a file it does not hold."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline._cli import options
from pipeline._cli.main import build_parser

pytestmark = pytest.mark.pure

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted([REPO / "README.md", *DOCS.glob("*.md")])

# [text](target): the target up to the first space or closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# Folders that are not the repository's own text: environments, caches, generated output.
SKIPPED = {".git", ".venv", "node_modules", "mutants", "__pycache__", ".pytest_cache",
           ".mypy_cache", ".ruff_cache", ".hypothesis", "sample_videos", "demo-out", "build"}
# Design notes kept outside the repository; spelt in two parts so this file does not cite them.
OUTSIDE = ("DESIGN" + ".md", "measured-" + "facts", "shared/" + "reference")


def links(page: Path) -> list[str]:
    """The link targets of a Markdown page, code blocks left out."""
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#+\s+(.*?)\s*$", text, re.M)}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def names(text: str, flag: str) -> bool:
    """Whether `text` mentions `flag` as a whole word (`--max-bytes`, not `--max-bytes-x`)."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def relative(targets: list[str]) -> list[str]:
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def repository_texts() -> Iterator[tuple[Path, str]]:
    """Every text file of the repository and its text (generated and installed folders left
    out, and never entered)."""
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root) / name
            try:
                yield path, path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue


def test_the_readme_and_the_docs_folder_exist_and_the_readme_stays_short() -> None:
    """README.md is under 300 lines and docs/ holds the rest, several pages of it."""
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) < 300
    assert len(PAGES) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_an_existing_file_and_heading(page: Path) -> None:
    """Each relative link in a page names a file that exists, and an anchor that a heading of
    that page makes."""
    broken = []
    for target in relative(links(page)):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    """A newcomer finds every page of docs/ from the README's links."""
    linked = {(REPO / t.partition("#")[0]).resolve()
              for t in relative(links(REPO / "README.md"))}
    assert [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked] == []


def test_the_readme_names_the_two_commands() -> None:
    """The README says how to start: `make demo` and `make test`."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_no_file_in_the_repository_cites_a_file_it_does_not_hold() -> None:
    """No code, test, benchmark or page names the design notes kept outside the repository."""
    citing = [f"{path.relative_to(REPO)}: {name}" for path, text in repository_texts()
              for name in OUTSIDE if name in text]
    assert citing == []


def test_every_docs_page_a_comment_points_to_exists() -> None:
    """Comments and docstrings that point to a page of docs/ name a page that is there."""
    cited = {(path.relative_to(REPO), name) for path, text in repository_texts()
             if path.suffix == ".py" for name in re.findall(r"docs/[\w/-]+\.md", text)}
    assert [f"{path}: {name}" for path, name in sorted(cited) if not (REPO / name).exists()] == []


def test_every_run_option_and_its_variable_is_documented() -> None:
    """Each flag of `run` is in docs/usage.md, and each environment-only setting (with its
    VIDEO_PIPELINE_ variable) is in docs/operations.md."""
    usage = (DOCS / "usage.md").read_text(encoding="utf-8")
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    flags = [o.flag for group in (options.LIMITS, options.STRATEGY, options.RUN,
                                  options.SEGMENTS, options.OUTPUTS) for o in group]
    assert [f for f in flags if not names(usage, f)] == []
    assert [o.env for o in options.ENV_ONLY if o.env not in operations] == []


def test_every_serve_option_is_documented() -> None:
    """Each flag of `serve` is in docs/serve.md."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    serve = sub.choices["serve"]  # type: ignore[index]
    flags = [s for a in serve._actions for s in a.option_strings if s.startswith("--")]
    text = (DOCS / "serve.md").read_text(encoding="utf-8")
    common = ("--help", "--verbose", "--log-format")  # every command's; in docs/usage.md
    assert [f for f in flags if f not in common and not names(text, f)] == []

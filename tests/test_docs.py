"""Every relative link in README.md and docs/*.md points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from experiments.paths import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    """The link targets of a markdown page outside code blocks, minus URLs and in-page anchors."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    targets = [m.group(1).split("#")[0] for m in LINK.finditer(text)]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_readme_and_docs_pages_exist_and_readme_stays_short():
    assert {p.name for p in PAGES} >= {"README.md", "library.md", "harness.md", "compare.md",
                                       "reproductions.md", "performance.md"}
    assert len((REPO / "README.md").read_text().splitlines()) <= 220


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file(page: Path):
    links = relative_links(page)
    missing = [t for t in links if not (page.parent / t).is_file()]
    assert not missing, f"{page.relative_to(REPO)}: broken links {missing}"


def test_the_link_finder_sees_links_and_images(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text("see [a](docs/a.md#x) and ![img](img/b.png) [web](https://x.org)\n"
                    "```\n[not](in_code.md)\n```\n")
    assert relative_links(page) == ["docs/a.md", "img/b.png"]

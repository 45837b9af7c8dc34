"""The docs hold together: every relative link of README.md, docs/*.md and docs/cli/*.md names
a file inside the repository (and a heading of it, for ``#anchor`` links), and the README's
documentation index lists every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted([*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "cli").glob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"(`+).+?\1", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, ...
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def without_code(text: str) -> str:
    """``text`` with fenced blocks and inline code spans blanked: links there are examples."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Targets of the Markdown links, images, reference definitions and HTML links of ``text``,
    outside code."""
    text = without_code(text)
    found = [*LINK.findall(text), *REFERENCE.findall(text), *HTML_LINK.findall(text)]
    return [target.strip() for target in found]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup and punctuation dropped, lower case, spaces
    as ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeats get ``-1``, ``-2``, as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``path`` that leave ``root`` (the repository), name no file, or
    name no heading; each as ``target: why``."""
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{target}: absolute path; link relative to {path.name}")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: leaves the repository ({resolved})")
        elif not resolved.exists():
            problems.append(f"{target}: no such file ({resolved.relative_to(root)})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(path):
    problems = broken_links(path)
    assert not problems, f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(problems)


def documentation_index() -> str:
    """The README's "## Documentation" section."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Documentation[ \t]*\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, "README.md has no '## Documentation' section"
    return match.group(1)


def test_readme_index_lists_every_page_and_only_pages():
    listed = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(documentation_index())
        if not EXTERNAL.match(target)
    }
    missing = [str(p.relative_to(ROOT)) for p in PAGES if p.resolve() not in listed]
    assert not missing, f"add these pages to the README's '## Documentation' list: {missing}"
    absent = [str(p.relative_to(ROOT)) for p in listed if not p.is_file()]
    assert not absent, f"the README's '## Documentation' list links missing pages: {absent}"


def test_link_checks_find_what_is_wrong(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.md").write_text(
        "# B page\n\n## `precision: auto`\n\n## Run folders\n\n## Run folders\n\n"
        "## `data.<split>.synthetic`\n"
    )
    page = docs / "a.md"
    page.write_text(
        "[ok](b.md#precision-auto) [ok](b.md#run-folders-1) [ok](#a) [web](https://x.org/y)\n"
        "[ok](b.md#datasplitsynthetic)\n"
        "[out](../../outside.md) [gone](c.md) [anchor](b.md#nothing) [abs](/docs/b.md)\n"
        "`[in code](nowhere.md)`\n```\n[in a block](nowhere.md)\n```\n"
        '![img](pic.png "title")\n[ref]: missing.md\n<a href="b.md#run-folders">x</a>\n# A\n'
    )
    problems = broken_links(page, root=tmp_path)
    assert [p.split(":")[0] for p in problems] == [
        "../../outside.md",
        "c.md",
        "b.md#nothing",
        "/docs/b.md",
        "pic.png",
        "missing.md",
    ], problems
    assert "leaves the repository" in problems[0] and "no heading #nothing" in problems[2]

"""The package speaks for itself (issue 20, item 7).

1. No tracked text file cites the team's private notes file or the directory outside the repository
   that holds it. The patterns are built from pieces, so this file does not match itself.
2. Every page cited as docs/<name>.md exists. Where a section is named in quotes right after the
   page (``docs/<name>.md, "Section"``), the page has a heading with exactly that text.

The files come from ``git ls-files`` (tracked, plus untracked files that are not ignored, so that new
pages are checked before they are committed). Binary files are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Built from pieces so that this file never matches the pattern it forbids.
_NOTES = "FAC" + "TS"
_OUTSIDE = ".." + "/shared"
FORBIDDEN = re.compile(re.escape(_NOTES) + "|" + re.escape(_OUTSIDE))

# A page citation, then optionally one or more quoted section names (each starting with a capital
# letter, as every heading of docs/ does), separated by commas, "and", or an opening parenthesis.
_CITE = re.compile(r"docs/([A-Za-z0-9_-]+)\.md")
_SECTION = re.compile(r"""\s*(?:,|;|\band\b|\(|:)?\s*(?:section\s+)?"""
                      r"""(?:"([A-Z][^"\n]{1,80}?)[.,]?"|“([A-Z][^”\n]{1,80}?)[.,]?”|'([A-Z][^'\n]{1,80}?)[.,]?')""")


def _text_files() -> list[tuple[str, str]]:
    """(relative path, text) of every tracked or new non-ignored file that decodes as UTF-8 without NUL bytes."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the list of repository files comes from git ls-files")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    files = []
    for rel in sorted(set(out.decode("utf-8", "surrogateescape").split("\0"))):
        path = ROOT / rel
        if not rel or not path.is_file():  # deleted in the work tree, or a submodule
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            files.append((rel, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def _flatten(text: str) -> str:
    """Join wrapped lines (and their comment markers) so a citation split over two lines reads as one.

    Python's implicit concatenation of string literals over a line break is undone first, so a
    section named inside a wrapped error message is read whole.
    """
    text = re.sub(r"""(["'])[ \t]*\n[ \t]*[rbfuRBFU]{0,2}\1""", "", text)
    return re.sub(r"[ \t]*\n[ \t]*(?:#:?[ \t]*|//[ \t]*|\*[ \t]*|>[ \t]*)?", " ", text)


def citations(text: str) -> list[tuple[str, str | None]]:
    """(page name, section or None) for every docs/<name>.md citation in ``text``."""
    flat = _flatten(text)
    found = []
    for m in _CITE.finditer(flat):
        pos, sections = m.end(), []
        while (s := _SECTION.match(flat, pos)) is not None:
            sections.append(next(g for g in s.groups() if g is not None).strip())
            pos = s.end()
        found.extend([(m.group(1), sec) for sec in sections] or [(m.group(1), None)])
    return found


def headings(page: Path) -> set[str]:
    """The text of every Markdown heading of ``page`` (outside fenced code blocks)."""
    heads, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)):
            heads.add(m.group(1))
    return heads


def broken_citations(files) -> list[str]:
    problems = []
    for rel, text in files:
        for name, section in citations(text):
            page = ROOT / "docs" / f"{name}.md"
            if not page.is_file():
                problems.append(f"{rel}: docs/{name}.md does not exist")
            elif section is not None and section not in headings(page):
                problems.append(f"{rel}: docs/{name}.md has no heading {section!r}")
    return sorted(set(problems))


def test_no_file_cites_notes_outside_the_repository():
    hits = [f"{rel}:{i}: {line.strip()[:120]}" for rel, text in _text_files()
            for i, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]
    assert not hits, "cite docs/numerics.md or docs/data.md (or the paper) instead:\n" + "\n".join(hits)


def test_cited_docs_pages_and_sections_exist():
    files = _text_files()
    # the scan is not vacuous: the library itself cites the facts pages with their sections
    src_cites = {c for rel, text in files if rel.startswith("src/") for c in citations(text)}
    assert ("numerics", "BLAS and LAPACK call limits") in src_cites
    assert ("data", "MNIST files and hashes") in src_cites
    problems = broken_citations(files)
    assert not problems, "\n".join(problems)


def test_citation_parser_on_known_text():
    """Negative and positive controls for the parser the two tests above rely on."""
    text = ('see docs/numerics.md, "BLAS and LAPACK call limits"; docs/data.md ("MNIST files and hashes",\n'
            '    # "Reference test errors") and docs/kernels.md. Also docs/numerics.md,\n'
            "    #: 'Tolerances and precision'.\n"
            'raise E(f"too big (docs/numerics.md, \'BLAS and "\n'
            '        "LAPACK call limits\'); subsample")')
    assert citations(text) == [("numerics", "BLAS and LAPACK call limits"), ("data", "MNIST files and hashes"),
                               ("data", "Reference test errors"), ("kernels", None),
                               ("numerics", "Tolerances and precision"),
                               ("numerics", "BLAS and LAPACK call limits")]
    d = "docs" + "/"  # in pieces: these two wrong citations must not be found in this file by the scan above
    bad = [("x.py", d + 'numerics.md, "No such section"'), ("y.py", d + "no_such_page.md")]
    assert broken_citations(bad) == ["x.py: " + d + "numerics.md has no heading 'No such section'",
                                     "y.py: " + d + "no_such_page.md does not exist"]
    assert FORBIDDEN.search("see " + _NOTES + ".md") and FORBIDDEN.search("in " + _OUTSIDE + "/x")
    assert not FORBIDDEN.search("facts are in docs/numerics.md")

"""The README and docs/*.md: every link and every repository file they name exists, and every
```python block runs.

What counts as a named repository file (outside ```python blocks):
- anything that starts with a top-level folder of the repository (``src/``, ``benchmarks/``,
  ``docs/``, ``tests/``, ``.ci/``), in prose or code, resolved from the repository root; a ``*``
  or ``{a,b}`` in it must match at least one file;
- inside `inline code`, a module path such as ``io.py``, ``renderer/_forward.py`` or ``cli/``
  (a name ending in ``.py`` or ``/``), resolved from the repository root, from ``src/imagegs/``
  or from the document's folder. Placeholders (``OUT/``, ``IMAGES/``, ``<name>``, ``~/``, absolute
  paths) and the files a snippet or command makes (``out/...``, ``photo.png``) are not files of the
  repository and are not checked.
docs/NOTES.md is the lab notebook: its links are checked, but not the paths it mentions, which
record the layout of the day they were written (``render/_kernels.py`` ...).

Python blocks: the blocks of one file run in order, in one namespace, in a fresh temporary working
folder, so each file's snippets must be complete (imports included) and may only use files they
make themselves or that ship with installed packages (scikit-image's sample images).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "imagegs"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LAB_NOTEBOOK = ROOT / "docs" / "NOTES.md"
TOP_DIRS = ("src", "benchmarks", "docs", "tests", ".ci")
README_MAX_LINES = 300

_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_TOP_PATH = re.compile(r"(?<![\w./~$<-])((?:%s)/[\w./*{},+-]*[\w*}/])" % "|".join(re.escape(d) for d in TOP_DIRS))
_MODULE = re.compile(r"^[A-Za-z_][\w-]*(?:/[\w-]+)*(?:\.py|/)$")


def _rel(doc: Path, root: Path = ROOT) -> str:
    return str(doc.relative_to(root))


def _blocks(text: str) -> list[tuple[str, int, str]]:
    """Fenced blocks as (language, first line number of the code, code)."""
    return [(m.group(2).lower(), text.count("\n", 0, m.start(3)) + 1, m.group(3)) for m in _FENCE.finditer(text)]


def _without_python(text: str) -> str:
    """The text with the code of ```python blocks blanked (line numbers kept)."""
    def blank(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m.group(0)) if m.group(2).lower() in ("python", "py") else m.group(0)
    return _FENCE.sub(blank, text)


def _without_fences(text: str) -> str:
    return _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _without_fences(doc.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = _slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _exists(path: str, bases: list[Path]) -> bool:
    if any(c in path for c in "*{"):
        patterns = _expand_braces(path)
        return all(any(glob.glob(str(b / p)) for b in bases) for p in patterns)
    return any((b / path).exists() for b in bases)


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(",") for q in _expand_braces(path[:m.start()] + alt + path[m.end():])]


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """Relative links (and their #anchors) of ``doc`` that point nowhere."""
    text = _without_fences(doc.read_text(encoding="utf-8"))
    # inline code is not a link (`Literal[int](1)`); blank it keeping the offsets for line numbers
    text = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), text)
    bad = []
    for m in _LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        where = f"{_rel(doc, root)}:{_line(text, m.start())}: link {target!r}"
        if not file.exists():
            bad.append(f"{where}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            bad.append(f"{where}: no heading #{anchor} in {_rel(file, root)}")
    return bad


def missing_paths(doc: Path, root: Path = ROOT, package: Path = PACKAGE) -> list[str]:
    """Repository files named in ``doc`` (see the module docstring) that do not exist."""
    text = _without_python(doc.read_text(encoding="utf-8"))
    bad = []
    for m in _TOP_PATH.finditer(text):
        path = m.group(1).rstrip(".,;:")
        if not _exists(path, [root]):
            bad.append(f"{_rel(doc, root)}:{_line(text, m.start())}: {path!r} is not in the repository")
    for m in _CODE_SPAN.finditer(_without_fences(text)):
        for token in m.group(2).split():
            token = token.strip(",;:()")
            if not _MODULE.match(token) or token.split("/")[0] in TOP_DIRS or token.startswith("out/"):
                continue
            if not _exists(token, [root, package, doc.parent]):
                bad.append(f"{_rel(doc, root)}:{_line(text, m.start())}: module {token!r} is not in the repository")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_links_exist(doc: Path) -> None:
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", [d for d in DOCS if d != LAB_NOTEBOOK], ids=_rel)
def test_named_files_exist(doc: Path) -> None:
    assert missing_paths(doc) == []


def test_checks_catch_what_they_should(tmp_path: Path) -> None:
    """The checkers report a missing file, a missing anchor and a missing module (else the two
    tests above could not fail)."""
    doc = tmp_path / "page.md"
    doc.write_text("# Title\n[a](nowhere.md) [b](#title) [c](#other) `src/imagegs/nope.py` "
                   "`renderer/_nope.py` `io.py` `out/made.png`\n```python\nsrc/not/checked.py\n```\n")
    (tmp_path / "io.py").write_text("")
    links = broken_links(doc, tmp_path)
    paths = missing_paths(doc, tmp_path, tmp_path)
    assert [s.split(": ", 2)[1] for s in links] == ["link 'nowhere.md'", "link '#other'"]
    assert len(paths) == 2 and "src/imagegs/nope.py" in paths[0] and "renderer/_nope.py" in paths[1]


def test_readme_is_a_front_door() -> None:
    """Short; its second quick-start command is what CI runs; its outputs land in an ignored folder."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < README_MAX_LINES
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in readme
    assert "/out/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "-o out/" in readme


def _python_docs() -> list[Path]:
    return [d for d in DOCS if any(lang in ("python", "py") for lang, _, _ in _blocks(d.read_text(encoding="utf-8")))]


@pytest.mark.parametrize("doc", _python_docs(), ids=_rel)
def test_python_blocks_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for lang, line, code in _blocks(doc.read_text(encoding="utf-8")):
        if lang in ("python", "py"):
            # Blank lines before the code keep the traceback's line numbers those of the document.
            exec(compile("\n" * (line - 1) + code, str(doc), "exec"), namespace)

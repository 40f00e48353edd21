"""The documentation builds, and no link in it points at nothing.

Rules (mkdocs.yml says the same):
- README.md and export/*.md are read on the repository: their relative links may point at any file of it.
- docs/*.md are served by mkdocs, which serves only docs/: their links stay inside docs/, and a repository file
  outside it is written as a code path in backticks (`benchmarks/results/compress.md`), which must exist.
  A file that is no longer in the tree is cited as `git show COMMIT:PATH`, and COMMIT must hold PATH.
- A link's #anchor must name a heading of its target page (the same slug on GitHub and in mkdocs).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Top-level directories of the repository: a code span that starts with one of them names a file that must exist.
REPO_DIRS = ("benchmarks", "docs", "edgedistill", "examples", "export", "tests")
CODE_PATH = re.compile(r"^(?:%s)/[\w./-]*$" % "|".join(REPO_DIRS))
GIT_SHOW = re.compile(r"^git show ([0-9a-f]{7,40}):((?:%s)/[\w./-]+)$" % "|".join(REPO_DIRS))
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def documentation_files() -> list[Path]:
    """Every Markdown file whose links the test checks."""
    files = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    files += [ROOT / "export" / name for name in ("README.md", "ANDROID.md", "IOS.md")]
    return [f for f in files if f.exists()]


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def mkdocs_slug(title: str) -> str:
    """Python-Markdown's toc slugify, which mkdocs uses."""
    value = re.sub(r"[^\w\s-]", "", title).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def github_slug(title: str) -> str:
    """GitHub's heading anchor."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def heading_text(raw: str) -> str:
    """A heading as both renderers see it: code spans and links reduced to their text."""
    raw = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    return raw.replace("`", "").replace("*", "").strip()


def anchors(path: Path) -> set[str]:
    """The anchors a page's headings make where GitHub and mkdocs agree on them."""
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        title = heading_text(match.group(2))
        if mkdocs_slug(title) == github_slug(title):
            found.add(mkdocs_slug(title))
    return found


def commit_holds(commit: str, path: str, root: Path) -> bool | None:
    """Whether COMMIT:PATH exists; None where git or the commit's history is not here (a shallow clone)."""
    try:
        shallow = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"], cwd=root, capture_output=True, text=True
        )
    except FileNotFoundError:
        return None
    if shallow.returncode != 0 or shallow.stdout.strip() == "true":
        return None
    probe = subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=root, capture_output=True)
    return probe.returncode == 0


def check_file(path: Path, root: Path = ROOT, docs: Path = DOCS) -> list[str]:
    """Every problem with PATH's links and code paths, as 'file:line: what'."""
    problems = []
    served = docs in path.resolve().parents
    where = path.relative_to(root) if root in path.resolve().parents else path
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for span in CODE_SPAN.finditer(line):
            code = span.group(2).strip()
            shown = GIT_SHOW.match(code)
            if shown:
                held = commit_holds(shown.group(1), shown.group(2), root)
                if held is False:
                    problems.append(f"{where}:{number}: commit {shown.group(1)} holds no {shown.group(2)}")
            elif CODE_PATH.match(code) and not (root / code).exists():
                problems.append(f"{where}:{number}: code path {code} does not exist")
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
            if not resolved.exists():
                problems.append(f"{where}:{number}: link {target} points at nothing")
                continue
            if served and docs.resolve() not in [resolved, *resolved.parents]:
                problems.append(
                    f"{where}:{number}: link {target} leaves docs/, which mkdocs cannot serve: "
                    f"write it as a code path (`{resolved.relative_to(root.resolve())}`)"
                )
            if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}:{number}: link {target}: no heading #{anchor} in {resolved.name}")
    return problems


def test_every_link_and_code_path_resolves():
    problems = [p for f in documentation_files() for p in check_file(f)]
    assert not problems, "\n".join(problems)


# The figures the site shows are copies (mkdocs serves only docs/); each must be its source as it is now.
FIGURES = {
    "docs/img/distill_accuracy.png": "benchmarks/results/distill_accuracy.png",
    "docs/img/compress_esnli.png": "benchmarks/results/compress_esnli.png",
    "docs/img/assistant_esnli.png": "benchmarks/results/assistant_esnli.png",
    "docs/img/latency.png": "benchmarks/results/latency/latency.png",
    "docs/img/ladder.png": "benchmarks/results/ladder.png",
}


def test_every_figure_is_a_current_copy_of_its_result():
    shown = {str(p.relative_to(ROOT)) for p in (DOCS / "img").iterdir()}
    assert shown == set(FIGURES), f"docs/img holds {sorted(shown)}: name each figure's source in FIGURES"
    stale = [
        f"cp {src} {copy}" for copy, src in FIGURES.items() if (ROOT / copy).read_bytes() != (ROOT / src).read_bytes()
    ]
    assert not stale, "a figure on the site differs from its result; refresh it:\n" + "\n".join(stale)


def test_the_checker_flags_what_is_broken(tmp_path):
    docs = tmp_path / "docs"
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "real.md").write_text("# Real\n")
    docs.mkdir()
    (docs / "other.md").write_text("# Other page\n\n## A section\n")
    page = docs / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md) [fine too](other.md#a-section) `benchmarks/results/real.md` [self](#page)\n"
        "[made up](nowhere.md)\n"
        "[bad anchor](other.md#no-such-section)\n"
        "[outside](../benchmarks/results/real.md)\n"
        "`benchmarks/results/made_up.md`\n"
        "```\n[in a code block](ignored.md) `benchmarks/ignored.md`\n```\n"
    )
    problems = check_file(page, root=tmp_path, docs=docs)
    assert [p.split(":")[1] for p in problems] == ["4", "5", "6", "7"], problems
    assert "nowhere.md points at nothing" in problems[0]
    assert "no heading #no-such-section" in problems[1]
    assert "leaves docs/" in problems[2]
    assert "made_up.md does not exist" in problems[3]
    # The same link from a file read on the repository (not served by mkdocs) may leave docs/.
    readme = tmp_path / "README.md"
    readme.write_text("[results](benchmarks/results/real.md) [docs](docs/other.md#a-section) [gone](docs/x.md)\n")
    assert [p.split(": ", 1)[1] for p in check_file(readme, root=tmp_path, docs=docs)] == [
        "link docs/x.md points at nothing"
    ]


def test_the_checker_flags_a_commit_without_the_file():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0 or commit_holds(head.stdout.strip(), "README.md", ROOT) is None:
        pytest.skip("no git history here (not a checkout, or a shallow clone)")
    assert commit_holds(head.stdout.strip(), "README.md", ROOT) is True
    assert commit_holds(head.stdout.strip(), "benchmarks/results/made_up.json", ROOT) is False


def test_anchors_are_the_ones_both_renderers_make(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# What we measured\n\n## The headline: `bench` latency\n\n## a -- b\n\n```\n# not a heading\n```\n"
    )
    # "a -- b" is a-b in mkdocs and a----b on GitHub: a link to it would break on one of them, so it is no anchor.
    assert anchors(page) == {"what-we-measured", "the-headline-bench-latency"}


@pytest.mark.slow
def test_the_site_builds_strict_and_offline(tmp_path):
    """mkdocs --strict fails on a link to a missing page or anchor; the built site asks no font server."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "No module named" not in build.stderr, "mkdocs-material is in the dev extras: pip install -e '.[dev]'"
    assert build.returncode == 0, build.stderr[-4000:]
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in index and "fonts.gstatic.com" not in index
    assert (site / "measured" / "index.html").exists()

"""The README and docs/ stay inside the repository, and their code examples keep working.

A clone has no ``../shared``: every link must point at a file of the repository (and at a heading that
exists), the README may not link outside at all, and docs/ may cite outside sites only over http(s).
The Python blocks run (or, when they need a finished run, at least compile), and every TOML block is a
valid config on top of the default profile, so an example cannot rot silently.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from robustxai.audit import _config as config_module
from robustxai.audit._config import deep_merge, profile_dict, validate_config

#: This file tests internals (tests/test_public_api.py requires the marker).
WHITE_BOX = "tests internals of robustxai.audit._config"

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
REQUIRED_DOCS = ("README.md", "architecture.md", "methods.md", "user-guide.md")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|<(https?://[^>\s]+)>")
# Python blocks that read a finished run (``open_run``) are only compiled.
_NEEDS_A_RUN = ("open_run(",)


def _prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (neither holds links)."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def _links(page: Path) -> list[str]:
    return [a or b for a, b in _LINK.findall(_prose(page.read_text()))]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _blocks(lang: str) -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for i, (kind, code) in enumerate(_FENCE.findall(page.read_text())):
            if kind == lang:
                out.append((f"{page.relative_to(ROOT)}#{i}", code))
    return out


def test_docs_exist_and_the_readme_points_into_them() -> None:
    for name in REQUIRED_DOCS:
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
    readme_links = _links(ROOT / "README.md")
    assert any(link.startswith("docs/") for link in readme_links), "the README must point into docs/"
    index = {link.split("#")[0] for link in _links(ROOT / "docs" / "README.md")}
    assert {n for n in REQUIRED_DOCS if n != "README.md"} <= index, "docs/README.md must index every page"


def _link_problems(page: Path, root: Path, external_ok: bool) -> list[str]:
    """Links of ``page`` that leave ``root``, name no file, or name a heading the target lacks."""
    problems = []
    if "../shared" in page.read_text():
        problems.append("refers to ../shared, which a clone does not have")
    for link in _links(page):
        if re.match(r"https?://", link):
            if not external_ok:
                problems.append(f"{link}: links outside the repository")
            continue
        if re.match(r"[a-z][a-z0-9+.-]*:", link):
            problems.append(f"{link}: not a file of the repository")
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.is_relative_to(root):
            problems.append(f"{link}: leaves the repository")
        elif not target.exists():
            problems.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            problems.append(f"{link}: no heading #{anchor} in {target.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(page: Path) -> None:
    # docs/ may cite papers and projects over http(s); the README links only inside the repository.
    problems = _link_problems(page, ROOT, external_ok=page.parent != ROOT)
    assert not problems, f"{page.name}: " + "; ".join(problems)


def test_link_check_catches_bad_links(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "methods.md").write_text("# Methods\n## Attacks\n")
    page = repo / "README.md"
    page.write_text(
        "[a](../shared/DESIGN.md) [b](docs/methods.md#nope) [c](docs/gone.md) [d](https://x.org) "
        "[ok](docs/methods.md#attacks) `[e](skipped.md)`\n```\n[f](g.md)\n```\n"
    )
    problems = _link_problems(page, repo.resolve(), external_ok=False)
    assert len(problems) == 5, problems
    assert not any("#attacks" in p or "skipped" in p or "g.md" in p for p in problems)
    assert _link_problems(repo / "docs" / "methods.md", repo.resolve(), external_ok=True) == []


PYTHON_BLOCKS = _blocks("python")
TOML_BLOCKS = _blocks("toml")


@pytest.mark.parametrize(("where", "code"), PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_examples_run(where: str, code: str) -> None:
    compiled = compile(code, where, "exec")
    if any(marker in code for marker in _NEEDS_A_RUN):
        return
    exec(compiled, {"__name__": "__docs__"})  # noqa: S102  (the repository's own example code)


def test_readme_example_shows_channels_and_points() -> None:
    (code,) = [c for w, c in PYTHON_BLOCKS if w.startswith("README.md")]
    assert "in_channels=" in code and "points" in code and "(x, y)" in code


@pytest.mark.parametrize(("where", "text"), TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_toml_examples_are_valid_configs(where: str, text: str) -> None:
    user = tomllib.loads(text)
    validate_config(deep_merge(profile_dict("default"), user), where)


def test_user_guide_documents_every_config_key() -> None:
    text = (ROOT / "docs" / "user-guide.md").read_text()
    reference = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    tables = [
        config_module.AuditConfig,
        config_module.DataConfig,
        config_module.TrainingConfig,
        config_module.ModelConfig,
        config_module.AttackConfig,
        config_module.ExplainConfig,
        config_module.ManipulationConfig,
        config_module.ReportConfig,
        config_module.SanityConfig,
        config_module.ExecutorConfig,
    ]
    forms = ("`{}`", "`[{}]`", "`[[{}]]`")  # a key, a table, an array of tables
    missing = [
        f"{t.__name__}.{key}"
        for t in tables
        for key in t.model_fields
        if not any(form.format(key) in reference for form in forms)
    ]
    assert not missing, f"keys missing from the user guide's configuration reference: {missing}"

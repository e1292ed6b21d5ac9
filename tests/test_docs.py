"""The documentation: the command-line reference is the parsers' own help, every page is in the site's
navigation and builds offline without a warning, and the README stays a short front door."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_the_parsers_help():
    module = cli_reference()
    assert module.PAGE.read_text() == module.render(), "run: python scripts/cli_reference.py"
    sections = re.findall(r"^## `(labformer[^`]*)`", module.PAGE.read_text(), flags=re.M)
    assert {"labformer train vit", "labformer train gpt", "labformer predict", "labformer serve"} <= set(sections)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for the tests that read it. Without `-q`: mkdocs 1.6 drops warnings before
    `--strict` counts them when `-q` is given."""
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_site_builds_strictly_and_offline(site):
    """`mkdocs build --strict`: a broken link, a missing anchor or a page left out of the navigation fails,
    in the English site and in the French one."""
    assert (site / "reference" / "cli.html").exists()  # the offline plugin: plain file links
    html = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html  # nothing to fetch to read it


# The student-facing pages, in English (page.md) and in French (page.fr.md, served under fr/).
FRENCH_PAGES = ["index", "install", "tutorial", "serve", "exercises/students", "exercises/teachers"]


def heading_ids(html: str) -> list[str]:
    return re.findall(r'<h[2-6] id="([^"]+)"', html)


def test_the_student_pages_are_in_french_too_with_a_language_switch(site):
    """Each student-facing page has its French version beside it; the built French page says `lang="fr"`,
    has the English page's sections under the same anchors (so a link to `page.md#anchor` works in both
    languages), and a switch to the English page and back. A page without a French version is the English
    page under fr/."""
    for name in FRENCH_PAGES:
        assert (ROOT / "docs" / f"{name}.md").exists() and (ROOT / "docs" / f"{name}.fr.md").exists(), name
        english, french = (site / f"{name}.html").read_text(), (site / "fr" / f"{name}.html").read_text()
        assert '<html lang="en"' in english and '<html lang="fr"' in french, name
        assert heading_ids(french) == heading_ids(english), name
        depth = name.count("/")
        switch = [(m.group(2), m.group(1)) for m in re.finditer(r'<a href="([^"]+)" hreflang="(en|fr)"', french)]
        assert ("en", "../" * (depth + 1) + f"{name}.html") in switch, (name, switch)
        assert ("fr", f"{name.split('/')[-1]}.html") in switch, (name, switch)
        switch = [(m.group(2), m.group(1)) for m in re.finditer(r'<a href="([^"]+)" hreflang="(en|fr)"', english)]
        assert ("fr", "../" * depth + f"fr/{name}.html") in switch, (name, switch)
    assert "Exercices : pour les étudiants" in (site / "fr" / "exercises" / "students.html").read_text()
    assert "Exercises: for students" in (site / "exercises" / "students.html").read_text()
    english, french = ((site / lang / "reference" / "cli.html").read_text() for lang in ("", "fr"))
    assert '<html lang="fr"' in french  # no French version: the English page, in the French site
    assert re.search(r"<h1.*?</h1>", french).group(0) == re.search(r"<h1.*?</h1>", english).group(0)
    assert not list((ROOT / "docs").rglob("etudiants*")) and not list((ROOT / "docs").rglob("enseignants*"))


def test_the_readme_is_a_short_front_door_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "    bash setup.sh && .venv/bin/labformer train\n" in readme
    assert "    bash setup.sh && .venv/bin/ruff check . && .venv/bin/python -m pytest -q\n" in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):  # every page the README links to exists
        assert (ROOT / target).exists(), target


TEXT_SUFFIXES = {".md", ".py", ".js", ".html", ".css", ".yml", ".yaml", ".toml", ".sh", ".txt", ".ipynb", ".cfg",
                 ".json", ".log", ".csv", ".tsv"}  # fmt: skip
# Words that only make sense to whoever wrote them on the day, or only on the machine that built it.
WORK_ITEM = re.compile(r"\b[Ii]ssues? #?\d+|\b[Ii]tem \d+ (?:stays|is)\b")
RELATIVE_TIME = re.compile(r"(?<![.\w])[Tt]oday\b(?!\()")
BUILD_PATHS = re.compile(r"/work/|/root/|/home/[a-z]|/tmp/pytest|/tmp/tmp")


def repository_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    this = Path(__file__).resolve()  # which spells the patterns out
    return [ROOT / name for name in listed.splitlines() if Path(name).suffix in TEXT_SUFFIXES and ROOT / name != this]


def test_no_work_item_numbers_relative_time_words_or_build_machine_paths():
    """The repository speaks of the project only: what a reader can check, whenever and wherever they read it."""
    files = repository_text_files()
    assert len(files) > 50 and ROOT / "README.md" in files
    found = []
    for path in files:
        text = path.read_text(errors="replace")
        for pattern in (WORK_ITEM, RELATIVE_TIME, BUILD_PATHS):
            found += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in pattern.finditer(text)]
        if path.suffix == ".md":  # in prose, "session" is a day of work on the project
            found += [f"{path.relative_to(ROOT)}: 'session'" for _ in re.finditer(r"\b[Ss]essions?\b", text)]
    assert found == []


def test_the_cifar_page_table_is_the_lab_cifar_preset():
    """Each `--flag value` in the CIFAR-10 page's table of the lab's settings is what `lab-cifar` trains with,
    and every setting the lab states is in the table."""
    from labformer.training.recipes import vit_configs

    model, train = vit_configs("lab-cifar", "folder", {}, {}, dict(image_size=32, channels=3, num_classes=10))
    text = (ROOT / "docs" / "cifar10.md").read_text()
    table = text.split("## `lab-cifar`", 1)[1].split("\n## ", 1)[0]
    flags = re.findall(r"`--([a-z-]+) ([^`]+)`", table)
    assert len(flags) >= 17, flags
    for flag, value in flags:
        name = flag.replace("-", "_")
        config = model if hasattr(model, name) else train
        expected = getattr(config, name)
        assert type(expected)(value) == expected, (flag, value, expected)
    named = {flag for flag, _ in flags}
    lab = {"val-size", "patch-size", "depth", "dim", "num-heads", "head-dim", "mlp-dim", "activation", "dropout",
           "lr", "weight-decay", "schedule", "grad-clip", "epochs", "augment"}  # fmt: skip
    assert lab <= named, lab - named

"""Structure of the notebooks: jupytext pairs in sync, every notebook in the table of contents,
a Colab badge and a Colab-only install cell that agree with the repository in ``_config.yml``,
and no error in any committed output (the book is built from those outputs).

Running the notebooks themselves is nbval's job: ``pytest --nbval-lax notebooks/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
COLAB = "https://colab.research.google.com"


def repository_url() -> str:
    """The project's repository URL, written once in ``_config.yml``."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    return cfg["repository"]["url"].rstrip("/")


def colab_url(name: str) -> str:
    """Where Colab opens notebook ``name`` (e.g. ``01_problem``) from the repository."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    slug = repository_url().removeprefix("https://github.com/")
    branch = cfg["repository"].get("branch", "main")
    return f"{COLAB}/github/{slug}/blob/{branch}/notebooks/{name}.ipynb"


def toc_files() -> list[str]:
    """Every document named in ``_toc.yml`` (root first), without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [
        (cell.cell_type, cell.source.strip())
        for cell in nb.cells
        if cell.cell_type in ("code", "markdown")
    ]


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_ten_lessons() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 11)]


def test_every_notebook_has_a_twin_and_every_twin_a_notebook() -> None:
    assert ids(NOTEBOOKS) == ids(TWINS), "run `jupytext --sync notebooks/*.ipynb`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_pair_is_in_sync(path: Path) -> None:
    twin = path.with_suffix(".py")
    nb = jupytext.read(path)
    py = jupytext.read(twin)
    assert cell_sources(py) == cell_sources(nb), (
        f"{path.name} and {twin.name} differ: run `jupytext --sync {twin}`"
    )
    formats = nb.metadata.get("jupytext", {}).get("formats", "")
    assert set(formats.split(",")) == {"ipynb", "py:percent"}, formats


def test_toc_lists_every_notebook_and_nothing_missing() -> None:
    files = toc_files()
    listed = [f for f in files if f.startswith("notebooks/")]
    assert listed == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    for f in files:
        candidates = [ROOT / f"{f}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml names {f}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_first_cells_open_in_colab_and_install_there(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert "Open In Colab" in first_md.source
    links = re.findall(r"\]\((https://colab\.research\.google\.com/github/[^)\s]+)\)",
                       first_md.source)
    assert links == [colab_url(path.stem)], links
    assert "remove-cell" in first_md.metadata.get("tags", []), "the book has a launch button"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first_code.source
    assert f"git+{repository_url()}" in first_code.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_committed_outputs_are_complete_and_error_free(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert all(isinstance(n, int) for n in counts), f"{path.name} has unexecuted cells"
    assert counts == sorted(counts), f"{path.name} was not executed top to bottom"
    for cell in code:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{path.name}: {out.get('ename')}"
            text = out.get("text", "") if out.output_type == "stream" else ""
            assert "Traceback" not in text, f"{path.name}: {text[:300]}"
    images = [
        out
        for cell in code
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert images, f"{path.name} draws no figure"

"""The built book, as a reader's browser sees it.

The site is built once per session from the committed notebook outputs (or taken from
``$CAGNET_BOOK_HTML``, a folder holding an already built ``index.html``), served on
127.0.0.1 and opened in Debian's headless Chromium through selenium. Every page in the table
of contents must load, show all its images, show no traceback, be reachable from the
navigation sidebar, and (for notebooks) launch on Colab from the project's repository.
Two pages are also screenshot; with ``CAGNET_SCREENSHOTS=1`` they are saved to
``book/screenshots/``.

Without Chromium these tests are skipped locally and fail in CI (``$CI`` set).
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
COLAB = "https://colab.research.google.com"


def toc_docs() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    docs = [toc["root"]]
    for part in toc.get("parts", []):
        docs += [chapter["file"] for chapter in part.get("chapters", [])]
    return docs


DOCS = toc_docs()
NOTEBOOK_DOCS = [d for d in DOCS if d.startswith("notebooks/")]


def expected_colab_url(doc: str) -> str:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    slug = cfg["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    branch = cfg["repository"].get("branch", "main")
    return f"{COLAB}/github/{slug}/blob/{branch}/{doc}.ipynb"


def build_book(out: Path) -> Path:
    """Build the book into ``out`` with warnings as errors; return the HTML folder."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--warningiserror", "--keep-going", "--all"]
    proc = subprocess.run(
        [*cmd, "--path-output", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"the book does not build:\n{proc.stdout[-6000:]}\n{proc.stderr}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CAGNET_BOOK_HTML")
    if given:
        html = Path(given)
        if not (html / "index.html").is_file():
            pytest.fail(f"CAGNET_BOOK_HTML={given} holds no index.html; build the book first")
        return html
    return build_book(tmp_path_factory.mktemp("book"))


@pytest.mark.slow
def test_book_builds_and_has_every_page(site: Path) -> None:
    for doc in DOCS:
        assert (site / f"{doc}.html").is_file(), f"{doc} was not built"
    assert (site / "index.html").is_file()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def base_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        msg = f"the site tests need {', '.join(missing)}: run `bash scripts/setup.sh --browser`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        # Only the local server is reachable: a page that needs the internet fails here.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    browser.get(url)
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (document.readyState === 'complete') done();"
        "else window.addEventListener('load', () => done());"
    )


ARTICLE = "main article"


@pytest.mark.browser
@pytest.mark.parametrize("doc", DOCS)
def test_page_loads_with_title_and_images(browser, base_url: str, doc: str) -> None:
    open_page(browser, urljoin(base_url, f"{doc}.html"))
    title = browser.title
    assert title and "404" not in title, title
    h1 = browser.execute_script(
        f"const h = document.querySelector('{ARTICLE} h1'); return h ? h.textContent : null;"
    )
    assert h1 and h1.strip(), f"{doc} has no heading"
    broken = browser.execute_script(
        f"return Array.from(document.querySelectorAll('{ARTICLE} img'))"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"
    )
    assert broken == [], f"{doc}: images that do not load: {broken}"
    if doc.startswith("notebooks/"):
        count = browser.execute_script(f"return document.querySelectorAll('{ARTICLE} img').length;")
        assert count > 0, f"{doc} shows no figure"


@pytest.mark.browser
@pytest.mark.parametrize("doc", DOCS)
def test_page_shows_no_error_output(browser, base_url: str, doc: str) -> None:
    open_page(browser, urljoin(base_url, f"{doc}.html"))
    text = browser.execute_script(f"return document.querySelector('{ARTICLE}').innerText;")
    assert "Traceback" not in text, f"{doc} shows a traceback"
    errors = browser.execute_script(
        f"return document.querySelectorAll('{ARTICLE} .output.traceback, "
        f"{ARTICLE} .output.stderr').length;"
    )
    assert errors == 0, f"{doc} shows error or stderr output"


RAW_TEX = ("\\(", "\\)", "\\[", "\\]", "$$", "\\mathcal", "\\frac", "\\mathrm", "\\sigma",
           "\\mu", "\\big", "\\tilde", "_{GAN}")


def rendered_formulas(browser) -> int:
    """Wait for MathJax to typeset the page; return how many formulas it rendered."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const count = () => document.querySelectorAll('mjx-container').length;"
        "if (!window.MathJax || !MathJax.startup) { done(-1); return; }"
        "MathJax.startup.promise.then(() => done(count()), () => done(-2));"
    )


@pytest.mark.browser
@pytest.mark.parametrize("doc", DOCS)
def test_formulas_render_from_the_site_itself(browser, base_url: str, doc: str) -> None:
    open_page(browser, urljoin(base_url, f"{doc}.html"))
    sources = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s));"
    )
    assert sources and all(s.startswith(base_url) for s in sources), sources
    count = rendered_formulas(browser)
    assert count >= 0, f"{doc}: MathJax did not start ({count})"
    # what a reader sees: the article's text outside rendered formulas and code
    text = browser.execute_script(
        f"const a = document.querySelector('{ARTICLE}').cloneNode(true);"
        "a.querySelectorAll('mjx-container, pre, code, script, .cell_output').forEach("
        "e => e.remove()); return a.innerText;"
    )
    raw = [t for t in RAW_TEX if t in text]
    assert not raw, f"{doc} shows raw TeX {raw}: {text[text.find(raw[0]) - 80:][:200]!r}"


@pytest.mark.browser
def test_the_book_renders_its_formulas(browser, base_url: str) -> None:
    total = 0
    for doc in DOCS:
        open_page(browser, urljoin(base_url, f"{doc}.html"))
        total += max(rendered_formulas(browser), 0)
    assert total >= 100, f"only {total} formulas rendered in the whole book"


@pytest.mark.browser
def test_sidebar_links_every_chapter(browser, base_url: str) -> None:
    open_page(browser, urljoin(base_url, f"{DOCS[0]}.html"))
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar-primary nav a'))"
        ".map(a => a.href);"
    )
    linked = {urldefrag(h).url for h in hrefs}
    for doc in DOCS[1:]:
        assert urljoin(base_url, f"{doc}.html") in linked, f"the sidebar misses {doc}"


@pytest.mark.browser
@pytest.mark.parametrize("doc", NOTEBOOK_DOCS)
def test_colab_launch_link(browser, base_url: str, doc: str) -> None:
    open_page(browser, urljoin(base_url, f"{doc}.html"))
    hrefs = browser.execute_script(
        f"return Array.from(document.querySelectorAll('a[href^=\"{COLAB}\"]')).map(a => a.href);"
    )
    assert hrefs, f"{doc} has no Colab launch link"
    assert set(hrefs) == {expected_colab_url(doc)}, hrefs


SCREENSHOT_PAGES = {  # page -> (what it shows, the element scrolled into view first)
    "book/intro": ("the overview figure", "#fig-overview"),
    "notebooks/04_context": ("a label map with its legend",
                             "#what-the-context-selector-chooses img"),
    "notebooks/07_training": ("the objectives as rendered formulas", "h1"),
}


@pytest.mark.browser
def test_screenshots(browser, base_url: str, tmp_path: Path) -> None:
    """Three pages render to a screenshot (after MathJax has typeset them);
    CAGNET_SCREENSHOTS=1 keeps them in book/screenshots/."""
    keep = os.environ.get("CAGNET_SCREENSHOTS") == "1"
    out = ROOT / "book" / "screenshots" if keep else tmp_path
    out.mkdir(exist_ok=True)
    for doc, (what, anchor) in SCREENSHOT_PAGES.items():
        assert doc in DOCS, doc
        open_page(browser, urljoin(base_url, f"{doc}.html"))
        assert rendered_formulas(browser) >= 0, f"{doc}: MathJax did not run"
        found = browser.execute_script(
            f"const e = document.querySelector('{anchor}'); if (e) e.scrollIntoView(); "
            "return e !== null;")
        assert found, f"{doc} has no {anchor} ({what})"
        path = out / f"{Path(doc).name}.png"
        assert browser.save_screenshot(str(path)), f"no screenshot of {doc} ({what})"
        assert path.stat().st_size > 10_000

"""The built book as a reader meets it: Chromium, headless, over a local HTTP server.

``make test`` runs this after it has built the book from the notebooks nbval executed
(``--book-html``, default ``_build/test-html``). It needs that build, so the first
pytest run of ``make test`` leaves this directory out and a second one runs it; run it
alone with ``.venv/bin/python -m pytest tests/browser -p no:cacheprovider``.

Every HTML page of the build is loaded and must show
- no console error, no uncaught exception, no failed request to the local server, and
  no request to any other host (the book is read offline);
- typeset math: every ``.math`` element holds MathJax output, no TeX error, and no raw
  ``$$`` in the text outside code;
- no control character (a TAB, say) in the page's text outside code, math included: a
  ``\\t`` escape that ate the ``t`` of ``\\times`` leaves a TAB that MathJax typesets
  without complaint as "imes";
- every image loaded with a natural width above zero, and every chapter at least one
  figure from its executed notebook;
- every link into the book resolving to a page that exists, and to an anchor on it;
- no link to an address that does not exist (no public repository, Colab or Binder).
The search page must find a term, and screenshots of the landing page and two chapters
are saved in ``_build/screenshots`` for review.

The browser is Debian's Chromium at ``/usr/bin/chromium`` (``make test`` installs it):
Playwright drives it and never downloads one.
"""

from __future__ import annotations

import functools
import html
import html.parser
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List, Set
from urllib.parse import unquote, urlsplit

import playwright.sync_api as playwright_sync
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "_build" / "screenshots"
#: Hosts no page may link to: the book has no public repository yet, so no launch
#: button (Colab, Binder) and no repository button may point at one.
NO_LINKS_TO = ("github.com", "colab.research.google.com", "mybinder.org")
#: Folders of the build that hold assets, not pages.
ASSET_FOLDERS = {"_static", "_sources", "_images", "_mathjax", "jupyter_execute", "_sphinx_design_static"}
#: Chapters whose pages are photographed, besides the landing page.
SCREENSHOT_CHAPTERS = ("notebooks/04_self_attention.html", "notebooks/07_positional_encoding.html")
TIMEOUT_MS = 60_000


def _build_dir(config: pytest.Config) -> Path:
    return (ROOT / config.getoption("book_html")).resolve()


def _pages(build: Path) -> List[str]:
    return sorted(
        p.relative_to(build).as_posix()
        for p in build.rglob("*.html")
        if not ASSET_FOLDERS & set(p.relative_to(build).parts[:-1])
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "page_path" in metafunc.fixturenames:
        build = _build_dir(metafunc.config)
        pages = _pages(build) if (build / "index.html").is_file() else []
        # No build: one case that fails in the `build` fixture with what to do, never a skip.
        metafunc.parametrize("page_path", pages or ["<no build>"])


@pytest.fixture(scope="session")
def build(pytestconfig: pytest.Config) -> Path:
    folder = _build_dir(pytestconfig)
    if not (folder / "index.html").is_file():
        pytest.fail(f"no built book at {folder} (no index.html); `make test` builds it (or `make book-check` "
                    "after an nbval run with --save-executed), or pass --book-html DIR")
    return folder


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def server(build: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(build)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}; install Debian's package: apt-get install -y chromium (make test does)")
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def anchors(build: Path) -> Dict[str, Set[str]]:
    """The ids (and names) on every page of the build, by path relative to it."""
    found: Dict[str, Set[str]] = {}
    for page in _pages(build):
        text = (build / page).read_text(encoding="utf-8")
        found[page] = {html.unescape(m) for m in re.findall(r'\b(?:id|name)="([^"]+)"', text)}
    return found


class _Visit:
    """A page loaded in a fresh context, with everything that went wrong on the way."""

    def __init__(self, browser: object, server: str, path: str, redirect: bool) -> None:
        self.server = server
        self.errors: List[str] = []
        self.failed: List[str] = []
        self.external: List[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)
        # "load": the page with its scripts, styles and images. MathJax and lazy images
        # are awaited where they are checked (_typeset, _images).
        self.page.goto(server + path, wait_until="load")
        if redirect:
            # index.html only redirects to the landing page: check where it lands.
            self.page.wait_for_url(lambda url: url != server + path)
            self.page.wait_for_load_state("load")

    def _local(self, url: str) -> bool:
        return url.startswith(self.server)

    def _route(self, route: object) -> None:
        url = route.request.url
        if self._local(url) or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:  # the book must work offline: nothing may come from another host
            self.external.append(url)
            route.abort()

    def _request_failed(self, request: object) -> None:
        if self._local(request.url):
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response: object) -> None:
        if self._local(response.url) and response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: object, server: str, build: Path) -> Iterator[object]:
    visits: List[_Visit] = []

    def open_page(path: str) -> _Visit:
        file = build / path.split("?", 1)[0]
        redirect = 'http-equiv="Refresh"' in file.read_text(encoding="utf-8")
        visits.append(_Visit(browser, server, path, redirect))
        return visits[-1]

    yield open_page
    for v in visits:
        v.close()


CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")  # TAB included, not newlines


class _TextOutsideCode(html.parser.HTMLParser):
    """The text of an HTML page outside pre, code, script and style (math included)."""

    SKIP = {"pre", "code", "script", "style", "textarea"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.parts: List[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self.SKIP:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth:
            self.parts.append(data)


def control_characters(page_html: str) -> List[str]:
    """Each control character in the text outside code, with its surroundings (repr)."""
    parser = _TextOutsideCode()
    parser.feed(page_html)
    text = "".join(parser.parts)
    return [repr(text[max(0, m.start() - 30): m.end() + 30]) for m in CONTROL.finditer(text)]


def test_the_control_character_check_finds_a_tab_in_math() -> None:
    assert control_characters(r'<p><span class="math">\(3\times 10^{-3}\)</span></p>') == []
    assert control_characters('<p><span class="math">\\(3\times 10^{-3}\\)</span></p>') != []  # "\t": a TAB
    assert control_characters("<pre>a\tb</pre><code>c\td</code>") == []


def _typeset(page: object) -> Dict[str, object]:
    """Wait for MathJax to finish; report the math elements it left alone, TeX errors and raw $$."""
    if page.locator(".math").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise.then(() => true)")
    return page.evaluate(
        """() => {
        const math = Array.from(document.querySelectorAll('.math'));
        const body = document.querySelector('main') || document.body;
        const copy = body.cloneNode(true);
        copy.querySelectorAll('pre, code, .highlight, script, style').forEach(e => e.remove());
        return {
            total: math.length,
            untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
            errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80)),
            raw: (copy.textContent.match(/.{0,40}\\$\\$.{0,40}/g) || []),
        };
    }"""
    )


def _images(page: object) -> List[Dict[str, object]]:
    """Every image of the page, loaded (lazy ones too): whether it decoded, and its natural size.

    A truncated PNG can still report the size in its header, so both are checked.
    """
    return page.evaluate(
        """async () => {
        const imgs = Array.from(document.images);
        imgs.forEach(img => { img.loading = 'eager'; });
        const decoded = await Promise.all(imgs.map(img => img.decode().then(() => true, () => false)));
        return imgs.map((img, i) => ({
            src: img.getAttribute('src'), width: img.naturalWidth, decoded: decoded[i],
            figure: !!img.closest('.cell_output'),
        }));
    }"""
    )


def _target(build: Path, server: str, href: str) -> tuple[str, str]:
    """The build-relative file and the fragment a local link points at."""
    parts = urlsplit(href)
    path = unquote(parts.path[len(urlsplit(server).path):])
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, unquote(parts.fragment)


def test_every_page_loads_typesets_and_links(page_path: str, build: Path, server: str, visit: object,
                                             anchors: Dict[str, Set[str]]) -> None:
    v = visit(page_path)
    page = v.page
    math = _typeset(page)
    images = _images(page)
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")

    problems: List[str] = []
    problems += v.errors
    problems += [f"failed request {f}" for f in v.failed]
    problems += [f"request to another host (the book must work offline): {u}" for u in v.external]
    problems += [f"math not typeset: {t!r}" for t in math["untypeset"]]
    problems += [f"TeX error: {t!r}" for t in math["errors"]]
    problems += [f"raw $$ in the text: {t!r}" for t in math["raw"]]
    problems += [f"control character in the text: {t}" for t in control_characters((build / page_path).read_text())]
    problems += [f"image did not load: {i['src']} (decoded: {i['decoded']}, natural width {i['width']})"
                 for i in images if not (i["decoded"] and i["width"] > 0)]
    if page_path.startswith("notebooks/"):
        if not any(i["figure"] for i in images):
            problems.append("a chapter without any figure (did the build get the executed notebook?)")
    problems += [f"a link to an address that does not exist: {h}" for h in sorted(set(hrefs))
                 if any(host in h for host in NO_LINKS_TO)]
    for href in sorted(set(hrefs)):
        if not href.startswith(server):
            continue
        path, fragment = _target(build, server, href)
        if not (build / path).is_file():
            problems.append(f"broken link: {href} (no {path} in the build)")
        elif fragment and path.endswith(".html") and path in anchors and fragment not in anchors[path]:
            problems.append(f"broken link: {href} (no anchor #{fragment} on {path})")
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


def test_search_finds_a_term(visit: object) -> None:
    page = visit("search.html?q=softmax").page
    # Sphinx lists the results one by one and then writes its summary: read them after it.
    page.locator("#search-results p.search-summary", has_text="Search finished").wait_for()
    found = page.evaluate("() => Array.from(document.querySelectorAll('#search-results ul.search li a')).map(a => a.getAttribute('href'))")
    assert any("notebooks/04_self_attention" in h for h in found), f"searching 'softmax' found {found}, not chapter 04"


def test_screenshots_for_review(build: Path, visit: object) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    landing = visit("index.html").page
    _typeset(landing)
    saved.append(SCREENSHOTS / "landing.png")
    landing.screenshot(path=str(saved[-1]))
    for chapter in SCREENSHOT_CHAPTERS:
        assert (build / chapter).is_file(), f"the screenshot chapter {chapter} is not in the build"
        page = visit(chapter).page
        _typeset(page)
        _images(page)
        name = Path(chapter).stem
        for what, selector in (("math", "div.math"), ("figure", ".cell_output img")):
            element = page.locator(selector).first
            element.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, -150)")
            saved.append(SCREENSHOTS / f"{name}_{what}.png")
            page.screenshot(path=str(saved[-1]))
    small = [p.name for p in saved if p.stat().st_size < 10_000]
    assert not small, f"screenshots that look empty (under 10 kB): {small}"

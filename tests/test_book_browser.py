"""The built book as a reader sees it, in a real headless browser (Debian's chromium and chromedriver, which
.ci/run installs): the findings table renders on the first page (with the forest plot when there are verdicts),
no notebook code is visible until its toggle is opened (on the lab pages: no solution), every run page has a title of its own, and no image or
internal link is broken."""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver "
                                 "(apt-get install chromium chromium-driver; .ci/run installs them)")]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def pages(html: Path) -> list[Path]:
    return sorted(p for p in (html / "book").rglob("*.html"))


def test_the_first_page_shows_the_findings(built_book, browser):
    from selenium.webdriver.common.by import By
    browser.get((built_book / "book" / "intro.html").as_uri())
    tables = [t for t in browser.find_elements(By.TAG_NAME, "table") if "evidence" in t.text and "verdict" in t.text]
    assert tables and tables[0].is_displayed()
    rows = tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) >= 3 and all(any(v in r.text for v in ("supported", "contradicted", "mixed", "inconclusive",
                                                              "see chapter")) for r in rows)
    forest = [i for i in browser.find_elements(By.TAG_NAME, "img") if "forest" in (i.get_attribute("src") or "")]
    if (Path(__file__).resolve().parents[1] / "book" / "figures" / "forest.png").exists():
        assert forest and forest[0].is_displayed()


def test_code_is_hidden_until_toggled_and_every_run_page_has_its_own_title(built_book, browser):
    import contextlib

    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    titles = {}
    for page in pages(built_book):
        browser.get(page.as_uri())
        if page.parent.name == "labs":  # a lab shows its exercise code; only the solutions are behind toggles
            find = "div.tag_otter_assign_solution_cell div.cell_input"
            # the toggle script rewraps the cells after load: on a busy machine a first look can fall in between
            with contextlib.suppress(TimeoutException):
                WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, find))
            solutions = browser.find_elements(By.CSS_SELECTOR, find)
            assert solutions or page.stem == "instructor", f"{page.name}: no solution cell found"
            assert not any(c.is_displayed() for c in solutions), f"{page.name}: a solution visible without its toggle"
            continue
        shown = [c for c in browser.find_elements(By.CSS_SELECTOR, "div.cell_input") if c.is_displayed()]
        assert not shown, f"{page.name}: code visible without opening its toggle"
        if page.parent.name == "runs":
            h1 = next(h.text for h in browser.find_elements(By.TAG_NAME, "h1") if h.is_displayed()).strip("#¶ \n")
            titles[page.name] = (browser.title, h1)
    assert len(titles) >= 5
    assert len({t for t, _ in titles.values()}) == len(titles), f"run pages share a browser title: {titles}"
    assert len({h for _, h in titles.values()}) == len(titles), f"run pages share an H1: {titles}"
    # a toggle opens: the first hidden cell's code shows after a click on its summary
    browser.get(pages(built_book)[0].as_uri())
    for page in pages(built_book):
        browser.get(page.as_uri())
        toggles = browser.find_elements(By.CSS_SELECTOR, "details.above-input > summary")
        if toggles:
            browser.execute_script("arguments[0].scrollIntoView();", toggles[0])
            toggles[0].click()
            from selenium.webdriver.support.ui import WebDriverWait
            WebDriverWait(browser, 10).until(  # the toggle opens with a short animation
                lambda b: any(c.is_displayed() for c in b.find_elements(By.CSS_SELECTOR, "div.cell_input")))
            break
    else:
        pytest.fail("no page has a code toggle")


def test_no_broken_image_or_internal_link(built_book, browser):
    from selenium.webdriver.common.by import By
    for page in pages(built_book):
        browser.get(page.as_uri())
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"{page.name}: broken image(s) {broken}"
        for a in browser.find_elements(By.CSS_SELECTOR, "article a[href]"):
            url = urlparse(a.get_attribute("href"))
            if url.scheme == "file":
                assert Path(unquote(url.path)).exists(), f"{page.name}: broken link {a.get_attribute('href')}"

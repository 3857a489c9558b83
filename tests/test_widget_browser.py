"""The chat page in headless Chromium against a real server: ask, cite, rate, refuse, embed.

Needs Debian's chromium and chromium-driver (`make browser` installs them as root); the
test skips, loudly, without them. Selenium never downloads a browser or a driver here:
both paths are given and SE_OFFLINE is set.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import load_store
from service.api.app import create_app
from service.api.routes.feedback import feedback_path
from service.config import Settings
from tests.conftest import private_copy, running
from tests.test_updates_e2e import GBK_QUESTION, GBK_TEXT

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps dialling Google on a machine
# with no network; a fresh profile keeps runs independent.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
    "--lang=zh-CN",
]
ANSWERABLE = "国务院哪份文件提出探索用大模型提升线上智能客服的意图识别？"
UNCOVERED = "2025年大模型市场规模预计多少？"
WAIT = 90  # seconds; the first question also warms the model


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Debian Chromium through its ChromeDriver, with a throw-away profile."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(
            f"BROWSER TEST SKIPPED: {' and '.join(missing)} not installed — run `make browser` "
            "as root (apt-get install chromium chromium-driver fonts-wqy-microhei)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    with (
        tempfile.TemporaryDirectory(prefix="zhice-chromium-") as profile,
        mock.patch.dict(os.environ, {"SE_OFFLINE": "true"}),
    ):
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        try:
            yield driver
        finally:
            driver.quit()


def _until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, f"waited for {what}")


def _ask(driver: WebDriver, question: str) -> WebElement:
    """Type a question, press send, return the answer's message once it is complete."""
    before = len(driver.find_elements(By.CSS_SELECTOR, ".msg.bot"))
    box = driver.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question)
    driver.find_element(By.ID, "send").click()
    _until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.bot")) > before, "a reply")
    message = driver.find_elements(By.CSS_SELECTOR, ".msg.bot")[-1]
    _until(driver, lambda d: "pending" not in (message.get_attribute("class") or ""), "the answer")
    return message


def _count_text_changes(driver: WebDriver) -> None:
    # How many times the answer's text changed while it arrived: > 1 means it streamed.
    driver.execute_script(
        "window.zhiceChanges = 0;"
        "new MutationObserver((records) => { window.zhiceChanges += records.length; }).observe("
        "document.getElementById('log'), {subtree: true, childList: true, characterData: true});"
    )


def _in_view(driver: WebDriver, element: WebElement) -> bool:
    script = (
        "const r = arguments[0].getBoundingClientRect();"
        "const p = document.getElementById('doc-text').getBoundingClientRect();"
        "return r.height > 0 && r.top >= p.top && r.top < p.bottom && r.bottom <= innerHeight;"
    )
    return bool(driver.execute_script(script, element))


def _open_host_page(
    browser: WebDriver, tmp_path: Path, url: str, attributes: str = ""
) -> WebElement:
    """A host page elsewhere (here a file) with the README's one-line snippet; its button."""
    host = tmp_path / "host.html"
    host.write_text(
        '<!doctype html><meta charset="utf-8"><title>某市政务服务网</title><h1>办事指南</h1>'
        f'<script src="{url}/widget.js" data-zhice {attributes}></script>',
        encoding="utf-8",
    )
    browser.get(host.as_uri())
    return _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-zhice-button]"), "")


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_ask_cite_rate_and_refuse(
    browser: WebDriver,
    live_server: str,
    real_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    browser.get(f"{live_server}/")
    assert "知策" in browser.title
    _count_text_changes(browser)

    message = _ask(browser, ANSWERABLE)
    answer = message.find_element(By.CSS_SELECTOR, ".answer")
    assert "高效办成一件事" in answer.text
    assert "refused" not in (message.get_attribute("class") or "")
    # With the chat endpoint the page streams (SSE) and the text grows piece by piece;
    # without it the page falls back to POST /ask.
    mode = browser.find_element(By.TAG_NAME, "body").get_attribute("data-mode")
    has_chat = httpx.get(f"{live_server}/v1/models", timeout=10).status_code == 200
    assert mode == ("stream" if has_chat else "ask")
    if has_chat:
        assert browser.execute_script("return window.zhiceChanges") > 3, "answer did not stream"

    # [1] is a button once the citations are known; it opens the document at the span.
    cite = message.find_element(By.CSS_SELECTOR, "button.cite[data-cite='1']")
    source, start, end = (cite.get_attribute(f"data-{a}") for a in ("source", "start", "end"))
    assert source and start and end
    cite.click()
    mark = _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#doc-text mark"), "<mark>")
    _until(browser, lambda d: mark.get_attribute("textContent"), "the quoted text")
    document = httpx.get(f"{live_server}/documents/{source}", timeout=10).json()
    quote = document["text"][int(start) : int(end)]
    assert mark.get_attribute("textContent") == quote
    assert mark.is_displayed() and _in_view(browser, mark)
    # The same citation /ask gives for the question: the page shows the contract's quote.
    asked = httpx.post(f"{live_server}/ask", json={"question": ANSWERABLE}, timeout=30).json()
    assert asked["citations"][0]["quote"] == quote
    shot = tmp_path / "widget-citation.png"
    assert browser.save_screenshot(str(shot))

    # 👎 writes one line to the feedback log.
    log = feedback_path(real_settings)
    written = len(_lines(log))
    message.find_element(By.CSS_SELECTOR, "button[data-rating='down']").click()
    rate = message.find_element(By.CSS_SELECTOR, ".rate")
    _until(browser, lambda d: rate.get_attribute("data-recorded") == "down", "feedback recorded")
    new = _lines(log)[written:]
    assert len(new) == 1
    assert new[0]["rating"] == "down" and new[0]["question"] == ANSWERABLE
    assert "高效办成一件事" in new[0]["answer"] and new[0]["request_id"]

    # A question the reports do not cover gets the distinct refusal state.
    refusal = _ask(browser, UNCOVERED)
    assert "refused" in (refusal.get_attribute("class") or "")
    label = refusal.find_element(By.CSS_SELECTOR, ".refusal-label")
    assert label.is_displayed() and label.text == "知识库中没有找到"
    assert not refusal.find_elements(By.CSS_SELECTOR, "button.cite")
    refused_shot = tmp_path / "widget-refusal.png"
    assert browser.save_screenshot(str(refused_shot))
    with capsys.disabled():
        print(f"\nwidget screenshots: {shot} {refused_shot}")


def test_embed_snippet_opens_the_page(
    browser: WebDriver, live_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    button = _open_host_page(browser, tmp_path, live_server)
    assert button.text == "政策问答"
    button.click()
    frame = browser.find_element(By.CSS_SELECTOR, "iframe[data-zhice-frame]")
    assert frame.get_attribute("src") == f"{live_server}/?embed=1"
    browser.switch_to.frame(frame)
    try:
        _until(browser, lambda d: d.find_element(By.ID, "question").is_displayed(), "the page")
        assert "知策" in browser.find_element(By.TAG_NAME, "h1").text
        # In the narrow frame the document covers the chat, with the span in view.
        message = _ask(browser, ANSWERABLE)
        message.find_element(By.CSS_SELECTOR, "button.cite[data-cite='1']").click()
        mark = _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#doc-text mark"), "")
        _until(browser, lambda d: _in_view(d, mark), "the highlighted span in view")
        browser.switch_to.default_content()
        shot = tmp_path / "widget-embedded.png"
        assert browser.save_screenshot(str(shot))
        with capsys.disabled():
            print(f"\nembedded widget screenshot: {shot}")
        browser.switch_to.frame(frame)
        browser.find_element(By.ID, "doc-close").click()
        browser.find_element(By.ID, "close").click()  # asks the host page to close it
    finally:
        browser.switch_to.default_content()
    _until(browser, lambda d: not frame.is_displayed(), "the widget to close")


def test_a_collection_page_asks_and_cites_its_own_documents(
    browser: WebDriver,
    real_settings: Settings,
    real_qa: QA,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """`?collection=` (and the snippet's data-collection) choose the knowledge base."""
    kb = private_copy(real_settings, tmp_path, request, collections_dir=tmp_path / "collections")
    qa = with_index(real_qa, load_store(kb), kb)
    with running(create_app(kb, qa=qa)) as url:
        files = {"file": ("haikou.txt", GBK_TEXT.encode("gbk"))}
        added = httpx.post(f"{url}/documents?collection=cities", files=files, timeout=60)
        assert added.status_code == 201, added.text

        browser.get(f"{url}/?collection=cities")
        message = _ask(browser, GBK_QUESTION)
        assert "50家" in message.find_element(By.CSS_SELECTOR, ".answer").text
        message.find_element(By.CSS_SELECTOR, "button.cite[data-cite='1']").click()
        mark = _until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#doc-text mark"), "")
        _until(browser, lambda d: mark.get_attribute("textContent"), "the quoted text")
        assert "50家" in (mark.get_attribute("textContent") or "")
        # The default collection does not hold the document, so there it is refused.
        browser.get(f"{url}/")
        assert "refused" in (_ask(browser, GBK_QUESTION).get_attribute("class") or "")

        _open_host_page(browser, tmp_path, url, 'data-collection="cities"').click()
        frame = browser.find_element(By.CSS_SELECTOR, "iframe[data-zhice-frame]")
        assert frame.get_attribute("src") == f"{url}/?embed=1&collection=cities"

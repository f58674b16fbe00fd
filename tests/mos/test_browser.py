"""End to end in a real headless browser: Debian's Chromium, driven by Selenium through ChromeDriver,
against ``medsr mos serve``: a rater completes the study (with a narrow-screen warning, images at no
less than their native size or a notice that says by how much less, flipping to the original in place,
scoring with the keys and the buttons, and a reload half-way), then ``medsr mos report`` reports exactly
what the rater did."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
import requests

from medsr.cli import main
from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL
from mos_support import ADMIN_TOKEN, make_evaluation, make_study, missing_service, running_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(autouse=True)
def _chromium():
    if not (CHROMIUM and CHROMEDRIVER):
        missing_service("needs Debian's chromium and chromium-driver (scripts/ci_services.sh installs them)")


INTENDED = {"nearest": 2, "bilinear": 3, "bicubic": 4}
NOTICE = re.compile(r"^Images are shown at (\d+)% of their size: enlarge the window\.$")
# What the viewing area shows: the visible image, its natural and on-screen size in device pixels, the notice.
SHOWN = """const img = document.querySelector('#' + arguments[0] + ' .stack img.current');
const box = img.getBoundingClientRect(), dpr = window.devicePixelRatio, notice = document.querySelector('#' + arguments[0] + ' .fit-notice');
return {src: img.getAttribute('src'), natural: [img.naturalWidth, img.naturalHeight], dpr: dpr,
        device: [box.width * dpr, box.height * dpr], at: [box.left * dpr, box.top * dpr],
        label: document.querySelector('#' + arguments[0] + ' .view-label').textContent,
        notice: notice.offsetParent === null ? null : notice.textContent,
        settled: document.querySelector('#' + arguments[0] + ' .viewer').dataset.view === [dpr, innerWidth, innerHeight].join(' ')};"""


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _visible(driver, element_id):
    return driver.find_element("id", element_id).is_displayed()


def _keys(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _shown(driver, section="trial"):
    return driver.execute_script(SHOWN, section)


def _pressed(driver, section, item_id):
    """The score whose button is pressed for ``item_id`` (None when none is)."""
    values = [
        b.get_attribute("data-value")
        for b in driver.find_elements(
            "css selector", f"#{section} .score[data-item='{item_id}'][aria-pressed='true']"
        )
    ]
    assert len(values) <= 1
    return int(values[0]) if values else None


def _selected(driver, section="trial"):
    return driver.find_element("css selector", f"#{section} .item-row.selected").get_attribute("data-item")


def _score_for(study, item_id):
    item = study.item_by_id[item_id]
    return {CHECK_ORIGINAL: 5, CHECK_DEGRADED: 1}.get(item.kind) or INTENDED[item.method]


def _check_native_size(browser, study):
    """(a) Large window: every image pixel on a whole m x m block of device pixels, m >= 1, as the screenshot
    shows; other pixel ratios; a small window (in device pixels): the notice says at what percentage."""
    browser.set_window_size(1600, 1200)
    _wait(browser, lambda d: d.execute_script("return innerWidth") == 1600 and _shown(d)["settled"])
    shown = _shown(browser)
    assert shown["dpr"] == 1 and shown["notice"] is None
    assert shown["device"][0] >= shown["natural"][0] and shown["device"][1] >= shown["natural"][1]
    m = shown["device"][0] / shown["natural"][0]
    assert (
        m == int(m)
        and shown["device"][1] == m * shown["natural"][1]
        and shown["at"] == [int(v) for v in shown["at"]]
    )
    m, (x, y) = int(m), (int(v) for v in shown["at"])
    original = cv2.imread(str(study.images_dir / shown["src"].rsplit("/", 1)[1]), cv2.IMREAD_GRAYSCALE)
    screen = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    block = screen[y : y + m * original.shape[0], x : x + m * original.shape[1]]
    expected = np.kron(original, np.ones((m, m), np.uint8))  # no interpolation: exact blocks
    assert all(np.array_equal(block[..., c], expected) for c in range(3))
    assert (
        f"1 image pixel = {m}\u00d7{m} screen pixels"
        in browser.find_element("css selector", "#trial .scale-info").text
    )

    for ratio in (1.25, 2):  # fractional and "Retina" pixel ratios
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 0, "height": 0, "deviceScaleFactor": ratio, "mobile": False},
        )
        _wait(browser, lambda d: _shown(d)["dpr"] == ratio and _shown(d)["settled"])
        shown = _shown(browser)
        assert shown["notice"] is None and all(s >= n for s, n in zip(shown["device"], shown["natural"]))
        assert (
            abs(shown["device"][0] / shown["natural"][0] - round(shown["device"][0] / shown["natural"][0]))
            < 0.01
        )

    # An 800x600 window at 25% browser zoom: 200x150 device pixels cannot hold the 128-pixel images.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 800, "height": 600, "deviceScaleFactor": 0.25, "mobile": False},
    )
    _wait(browser, lambda d: _shown(d)["dpr"] == 0.25 and _shown(d)["settled"])
    shown = _shown(browser)
    percent = int(NOTICE.match(shown["notice"]).group(1))
    assert (
        shown["device"][0] < shown["natural"][0]
        and percent == int(100 * shown["device"][0] / shown["natural"][0]) < 100
    )
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.set_window_size(1400, 1000)  # back to the window the ratings record
    _wait(
        browser,
        lambda d: (
            _shown(d)["dpr"] == 1 and d.execute_script("return innerWidth") == 1400 and _shown(d)["settled"]
        ),
    )
    assert _shown(browser)["notice"] is None


def _check_flip(browser, trial):
    """(b) Holding Space, or the mouse button on the viewing area, shows the original in place of the selected image."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    first, second = trial["items"][0], trial["items"][1]
    assert _shown(browser)["src"] == first["url"] and _shown(browser)["label"] == "Image A"
    ActionChains(browser).key_down(Keys.SPACE).perform()
    _wait(browser, lambda d: _shown(d)["src"] == trial["original"] and _shown(d)["label"] == "ORIGINAL")
    assert browser.execute_script("return window.scrollY") == 0  # Space did not scroll the page
    ActionChains(browser).key_up(Keys.SPACE).perform()
    _wait(browser, lambda d: _shown(d)["src"] == first["url"] and _shown(d)["label"] == "Image A")
    _keys(browser, Keys.ARROW_RIGHT)  # another image, flipped with the mouse
    _wait(browser, lambda d: _shown(d)["src"] == second["url"] and _selected(d) == second["item_id"])
    stage = browser.find_element("css selector", "#trial .stage")
    ActionChains(browser).move_to_element(stage).click_and_hold().perform()
    _wait(browser, lambda d: _shown(d)["src"] == trial["original"] and _shown(d)["label"] == "ORIGINAL")
    ActionChains(browser).release().perform()
    _wait(browser, lambda d: _shown(d)["src"] == second["url"] and _shown(d)["label"] == "Image B")
    _keys(browser, Keys.ARROW_LEFT)
    _wait(browser, lambda d: _selected(d) == first["item_id"] and _shown(d)["src"] == first["url"])
    assert all(
        _pressed(browser, "trial", i["item_id"]) is None for i in trial["items"]
    )  # flipping scored nothing


def test_a_rater_completes_the_study_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    study = make_study(make_evaluation(tmp_path), tmp_path / "study")
    with running_server(study.folder) as base:
        browser.set_window_size(800, 900)
        browser.get(base + "/")
        _wait(browser, lambda d: _visible(d, "narrow"))  # a small screen is warned
        browser.set_window_size(1400, 1000)
        _wait(browser, lambda d: not _visible(d, "narrow"))
        _wait(browser, lambda d: len(d.find_elements("css selector", "#scale tr")) == 5)
        browser.find_element("id", "alias").send_keys(
            "reader-e2e 12345"
        )  # digits typed in a field are text, not scores
        assert browser.find_element("id", "alias").get_attribute("value") == "reader-e2e 12345"
        browser.find_element("id", "alias").clear()
        browser.find_element("id", "alias").send_keys("reader-e2e")
        browser.find_element("id", "start").click()
        _wait(browser, lambda d: "/r/" in d.current_url and _visible(d, "calibration"))
        token = browser.current_url.rsplit("/", 1)[1]

        submit = browser.find_element("id", "calibration-submit")  # calibration: the score buttons (mouse)
        _wait(browser, lambda d: d.find_elements("css selector", "#calibration .viewer.loaded"))
        assert not submit.is_enabled()
        for c in study.calibration:
            browser.find_element(
                "css selector", f"#calibration .score[data-item='{c.item_id}'][data-value='{c.expected}']"
            ).click()
            assert (
                _pressed(browser, "calibration", c.item_id) == c.expected
                and _selected(browser, "calibration") == c.item_id
            )
        _wait(browser, lambda d: submit.is_enabled())
        submit.click()
        _wait(browser, lambda d: _visible(d, "feedback"))
        assert browser.find_element("id", "feedback-list").text.count("expected") == 2
        browser.find_element("id", "begin").click()

        for position in range(1, len(study.trials) + 1):
            _wait(
                browser,
                lambda d: (
                    d.find_element("id", "progress").text == f"Trial {position} of {len(study.trials)}"
                    and d.find_elements("css selector", "#trial .viewer.loaded")
                ),
            )
            if position == 3:  # leave and come back with the link
                browser.refresh()
                _wait(
                    browser,
                    lambda d: (
                        d.find_element("id", "progress").text == f"Trial 3 of {len(study.trials)}"
                        and d.find_elements("css selector", "#trial .viewer.loaded")
                    ),
                )
            trial = requests.get(f"{base}/api/rater/{token}/trials/{position}", timeout=10).json()
            item_ids = [i["item_id"] for i in trial["items"]]
            rows = browser.find_elements("css selector", "#trial .item-row")
            assert [r.get_attribute("data-item") for r in rows] == item_ids
            assert [r.find_element("css selector", ".pick").text for r in rows] == [
                f"Image {i['label']}" for i in trial["items"]
            ]
            button = browser.find_element("id", "trial-submit")
            if position == 1:
                _check_native_size(browser, study)
                _check_flip(browser, trial)
                _keys(browser, Keys.ENTER)  # Enter before every image has a score
                _wait(
                    browser, lambda d: "has no score" in d.find_element("css selector", "#trial .hint").text
                )
                assert not button.is_enabled()
            if position == 2:  # the score buttons
                for item_id in item_ids:
                    browser.find_element(
                        "css selector",
                        f"#trial .score[data-item='{item_id}'][data-value='{_score_for(study, item_id)}']",
                    ).click()
            else:  # (c) keys 1-5 score the selected image, Right moves on
                for k, item_id in enumerate(item_ids):
                    assert (
                        _selected(browser) == item_id and _shown(browser)["src"] == trial["items"][k]["url"]
                    )
                    _keys(
                        browser, str(6 - _score_for(study, item_id))
                    )  # a first answer, then the intended one
                    _keys(browser, str(_score_for(study, item_id)), Keys.ARROW_RIGHT)
            for item_id in item_ids:
                assert _pressed(browser, "trial", item_id) == _score_for(study, item_id)
            _wait(browser, lambda d: button.is_enabled())
            if position % 2:
                _keys(browser, Keys.ENTER)  # Enter submits ...
            else:
                button.click()  # ... and so does the button
            if position < len(study.trials):
                _wait(
                    browser,
                    lambda d: (
                        d.find_element("id", "progress").text != f"Trial {position} of {len(study.trials)}"
                    ),
                )
        _wait(browser, lambda d: _visible(d, "done"))

        browser.get(base + "/admin")  # the organiser's page, behind the token
        browser.find_element("id", "token").send_keys("wrong-token-wrong-token\n")
        _wait(browser, lambda d: "admin token required" in d.find_element("id", "error").text)
        browser.find_element("id", "token").clear()
        browser.find_element("id", "token").send_keys(ADMIN_TOKEN + "\n")
        _wait(
            browser, lambda d: _visible(d, "dashboard") and "bicubic" in d.find_element("id", "results").text
        )
        assert (
            "24/24" in browser.find_element("id", "raters").text
            and "reader-e2e" in browser.find_element("id", "raters").text
        )
        problems = [
            e["message"]
            for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and "favicon.ico" not in e["message"] and "401" not in e["message"]
        ]
        assert problems == []  # no script error, no CSP refusal

    out = tmp_path / "report"
    assert main(["mos", "report", str(study.folder), "--out", str(out), "--resamples", "200"]) == 0
    results = json.loads((out / "report.json").read_text())
    assert results["n_raters"] == 1 and results["n_ratings"] == 24
    # a script rates far faster than a reader: the server's own clock flags it (under 1 s per trial),
    # whatever the page reported; on a slow machine it may take longer, and then it must not be flagged
    rater = results["raters"][0]
    fast = rater["median_server_seconds"] < 1.0
    assert (
        results["n_flagged"] == int(fast)
        and any(r.startswith("implausibly fast") for r in rater["reasons"]) == fast
    )
    assert {
        m: v["mos"] for m, v in results["all_raters"]["methods"].items()
    } == INTENDED  # what the keys and buttons scored
    assert results["all_raters"]["checks"][CHECK_ORIGINAL]["mean"] == 5
    assert (
        results["raters"][0]["alias"] == "reader-e2e" and results["raters"][0]["narrow_screen_ratings"] == 0
    )
    assert 0 < results["raters"][0]["median_trial_seconds"] < 60
    assert "| bicubic | 4.00 |" in (out / "report.md").read_text()

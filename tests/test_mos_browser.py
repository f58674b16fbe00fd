"""End to end in a real headless browser: Debian's Chromium, driven by Selenium through ChromeDriver,
against ``medsr mos serve``: a rater completes the study (with a narrow-screen warning, the loupe and a
reload half-way), then ``medsr mos report`` reports exactly what the rater did."""

from __future__ import annotations

import json
import shutil

import pytest

from medsr.cli import main
from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL

from mos_support import ADMIN_TOKEN, make_evaluation, make_study, running_server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (scripts/ci_services.sh installs them)")
INTENDED = {"nearest": 2, "bilinear": 3, "bicubic": 4}


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _visible(driver, element_id):
    return driver.find_element("id", element_id).is_displayed()


def _score_for(study, item_id):
    item = study.item_by_id[item_id]
    return {CHECK_ORIGINAL: 5, CHECK_DEGRADED: 1}.get(item.kind) or INTENDED[item.method]


def test_a_rater_completes_the_study_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    study = make_study(make_evaluation(tmp_path), tmp_path / "study")
    with running_server(study.folder) as base:
        browser.set_window_size(800, 900)
        browser.get(base + "/")
        _wait(browser, lambda d: _visible(d, "narrow"))                 # a small screen is warned
        browser.set_window_size(1400, 1000)
        _wait(browser, lambda d: not _visible(d, "narrow"))
        _wait(browser, lambda d: len(d.find_elements("css selector", "#scale tr")) == 5)
        browser.find_element("id", "alias").send_keys("reader-e2e")
        browser.find_element("id", "start").click()
        _wait(browser, lambda d: "/r/" in d.current_url and _visible(d, "calibration"))

        submit = browser.find_element("id", "calibration-submit")
        assert not submit.is_enabled()
        for c in study.calibration:
            browser.find_element("css selector", f"#calibration-grid input[name='{c.item_id}'][value='{c.expected}']").click()
        _wait(browser, lambda d: submit.is_enabled())
        submit.click()
        _wait(browser, lambda d: _visible(d, "feedback"))
        assert browser.find_element("id", "feedback-list").text.count("expected") == 2
        browser.find_element("id", "begin").click()

        for position in range(1, len(study.trials) + 1):
            _wait(browser, lambda d: d.find_element("id", "progress").text == f"Trial {position} of {len(study.trials)}")
            radios = browser.find_elements("css selector", "#trial-grid input[type=radio]")
            item_ids = list(dict.fromkeys(r.get_attribute("name") for r in radios))
            assert len(item_ids) == len(study.trial_of_item[item_ids[0]].items)
            if position == 1:                                              # the loupe follows the mouse on every image
                frame = browser.find_elements("css selector", "#trial-grid .frame")[0]
                ActionChains(browser).move_to_element(frame).perform()
                loupes = browser.find_elements("css selector", "#trial-grid .loupe")
                _wait(browser, lambda d: all(l.value_of_css_property("display") == "block" for l in loupes))
                assert len(loupes) == len(item_ids) + 1
            if position == 3:                                              # leave and come back with the link
                browser.refresh()
                _wait(browser, lambda d: d.find_element("id", "progress").text == f"Trial 3 of {len(study.trials)}")
            for item_id in item_ids:
                browser.find_element("css selector", f"#trial-grid input[name='{item_id}'][value='{_score_for(study, item_id)}']").click()
            button = browser.find_element("id", "trial-submit")
            _wait(browser, lambda d: button.is_enabled())
            button.click()
        _wait(browser, lambda d: _visible(d, "done"))

        browser.get(base + "/admin")                                       # the organiser's page, behind the token
        browser.find_element("id", "token").send_keys("wrong-token-wrong-token\n")
        _wait(browser, lambda d: "admin token required" in d.find_element("id", "error").text)
        browser.find_element("id", "token").clear()
        browser.find_element("id", "token").send_keys(ADMIN_TOKEN + "\n")
        _wait(browser, lambda d: _visible(d, "dashboard") and "bicubic" in d.find_element("id", "results").text)
        assert "20/20" in browser.find_element("id", "raters").text and "reader-e2e" in browser.find_element("id", "raters").text

    out = tmp_path / "report"
    assert main(["mos", "report", str(study.folder), "--out", str(out), "--resamples", "200"]) == 0
    results = json.loads((out / "report.json").read_text())
    assert results["n_raters"] == 1 and results["n_ratings"] == 20 and results["n_flagged"] == 0
    assert {m: v["mos"] for m, v in results["all_raters"]["methods"].items()} == INTENDED
    assert results["all_raters"]["checks"][CHECK_ORIGINAL]["mean"] == 5
    assert results["raters"][0]["alias"] == "reader-e2e" and results["raters"][0]["narrow_screen_ratings"] == 0
    assert 0 < results["raters"][0]["median_trial_seconds"] < 60
    assert "| bicubic | 4.00 |" in (out / "report.md").read_text()

"""The page in a real browser: headless Chromium driven by Selenium.

Starts `python -m bimer_tf.app` (waitress, offline tiny.en speech
recognition) on a free loopback port with the tiny export, then: uploads a
clip and sees the label and one bar per class; records from Chromium's fake
microphone (a WAV of speech) with Record / Stop and sees a transcript and a
label; edits the transcript and predicts again; sees bad input reported on
the page; uploads a long recording and sees its emotion timeline (the chart
and a row per segment), clicks a row and hears that segment (the audio
player moves to its start). Needs Debian's `chromium` and `chromium-driver`
(`.ci/run` installs them); skipped with the reason when they are missing.

    BIMER_TF_SCREENSHOT_MODEL=export/bimer/1 pytest tests/app/test_browser.py -k screenshot

writes docs/app.png (the README's screenshot) and docs/app_timeline.png (a
long RAVDESS recording's timeline) with that model.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED_CORPORA, TINY_LABELS
from test_app import long_recording, long_speech, recognizer, speech_clip, start_app, words  # noqa: F401  (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser tests need Chromium and its driver: apt-get install chromium chromium-driver",
)

SCREENSHOT = REPO_ROOT / "docs" / "app.png"
TIMELINE_SCREENSHOT = REPO_ROOT / "docs" / "app_timeline.png"
# The fake microphone plays the clip (about 3.5 s) in a loop from when the page opens it; any
# stretch of two loops holds one whole sentence, wherever the recording starts in the loop (a
# busy machine can start MediaRecorder well after the device).
RECORD_SECONDS = 8.0


def make_driver(profile_dir: Path, fake_microphone: Path):
    selenium = pytest.importorskip("selenium", reason="pip install selenium (the dev extra)")
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    del selenium
    options = ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=900,1250", f"--user-data-dir={profile_dir}",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_microphone}",
    ):
        options.add_argument(flag)
    return Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def wait_for(driver, condition, timeout=120, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))
    except Exception:
        page_error = driver.find_element("id", "error").text
        raise AssertionError(f"timed out waiting for {what}; page error: {page_error!r}") from None


def text_of(driver, element_id):
    """The element's text as the page set it (CSS may capitalise what is shown)."""
    return driver.find_element("id", element_id).get_attribute("textContent")


def status_is(expected):
    return lambda d: text_of(d, "status") == expected


@pytest.fixture(scope="module")
def app_url(tiny_export):
    # The tiny model hears 1 s at once; clips up to 10 s stay single utterances here, longer
    # recordings get the timeline.
    process, base = start_app(tiny_export, "--asr", "whisper-tiny-offline", "--threads", "2", "--long-audio-s", "10")
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def driver(tmp_path, speech_clip):
    driver = make_driver(tmp_path / "profile", speech_clip[0])
    yield driver
    driver.quit()


def predict_from_file(driver, path):
    driver.find_element("id", "file-input").send_keys(str(path))
    driver.find_element("id", "upload-button").click()


def result_shown(driver):
    return not driver.find_element("id", "result").get_attribute("hidden") and text_of(driver, "label")


def test_upload_record_edit_in_a_real_browser(driver, app_url, speech_clip, tmp_path):
    from selenium.webdriver.common.by import By

    path, sentence = speech_clip
    driver.get(app_url + "/")
    wait_for(driver, lambda d: text_of(d, "model-summary").startswith("Model: bimer"), 30, "the model description")
    assert "whisper-tiny-offline" in text_of(driver, "model-summary")

    # 1. upload a clip: label, one bar per class, transcript from speech recognition
    predict_from_file(driver, path)
    wait_for(driver, status_is("Transcribed and predicted."), what="the upload's prediction")
    assert text_of(driver, "label") in TINY_LABELS
    bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    assert [bar.get_attribute("data-label") for bar in bars] == TINY_LABELS
    assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar-row.top")) == 1
    assert "door" in words(driver.find_element("id", "transcript").get_attribute("value"))
    assert "speech recognition" in text_of(driver, "timings") and "model" in text_of(driver, "timings")

    # 2. record from the (fake) microphone: Record, a visible recording state, Stop
    driver.find_element("id", "transcript").clear()
    driver.find_element("id", "record-button").click()
    wait_for(driver, lambda d: text_of(d, "recording-state").startswith("Recording…"), 20, "the recording state")
    assert driver.find_element("id", "stop-button").is_enabled()
    time.sleep(RECORD_SECONDS)
    driver.find_element("id", "stop-button").click()
    wait_for(driver, status_is("Transcribed and predicted."), what="the recording's prediction")
    assert text_of(driver, "recording-state").startswith("Recorded ")
    transcript = driver.find_element("id", "transcript").get_attribute("value")
    assert "door" in words(transcript), (transcript, text_of(driver, "recording-state"))
    assert text_of(driver, "label") in TINY_LABELS

    # 3. edit the transcript and predict again: no speech recognition this time.
    # The text is markup on purpose: it must come back as text, never as HTML.
    edited = "i am so happy <img src=x onerror=alert(1)>"
    box = driver.find_element("id", "transcript")
    box.clear()
    box.send_keys(edited)
    driver.find_element("id", "repredict-button").click()
    wait_for(driver, status_is("Predicted."), what="the edited transcript's prediction")
    assert driver.find_element("id", "transcript").get_attribute("value") == edited
    assert "speech recognition" not in text_of(driver, "timings")
    assert driver.find_elements(By.TAG_NAME, "img") == []

    # 4. bad input is shown on the page, and the next request works
    junk = tmp_path / "notes.wav"
    junk.write_text("not audio at all\n" * 50)
    predict_from_file(driver, junk)
    wait_for(driver, lambda d: d.find_element("id", "error").is_displayed(), 60, "the error message")
    assert "cannot decode" in text_of(driver, "error")
    predict_from_file(driver, path)
    wait_for(driver, status_is("Transcribed and predicted."), what="a prediction after the error")
    assert not driver.find_element("id", "error").is_displayed()


def timeline_shown(driver):
    return not driver.find_element("id", "timeline").get_attribute("hidden") and text_of(driver, "status").startswith("Timeline:")


def player_time(driver) -> float:
    return driver.execute_script("return document.getElementById('playback').currentTime")


def test_long_recording_timeline_in_a_real_browser(driver, app_url, long_speech, speech_clip):
    from selenium.webdriver.common.by import By

    path, sentences = long_speech
    driver.get(app_url + "/")
    wait_for(driver, lambda d: text_of(d, "model-summary").startswith("Model: bimer"), 30, "the model description")
    assert "longer recordings" in text_of(driver, "long-hint") and "10:00" in text_of(driver, "long-hint")

    # 1. a long upload: the timeline, not one label
    predict_from_file(driver, path)
    wait_for(driver, timeline_shown, 240, "the timeline")
    assert driver.find_element("id", "result").get_attribute("hidden")  # no single label
    assert not driver.find_element("id", "text-section").is_displayed()
    assert text_of(driver, "dominant") in TINY_LABELS
    rows = driver.find_elements(By.CSS_SELECTOR, "#segments tbody tr")
    assert len(rows) >= sentences - 3
    chart_segments = driver.find_elements(By.CSS_SELECTOR, "#chart svg g.segment")
    assert len(chart_segments) == len(rows)
    assert [li.get_attribute("data-label") for li in driver.find_elements(By.CSS_SELECTOR, "#shares li")] == TINY_LABELS
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        assert len(cells) == 5
        assert row.get_attribute("data-label") in TINY_LABELS
        assert re.fullmatch(r"\d+:\d\d\.\d–\d+:\d\d\.\d", cells[1].text), cells[1].text
        assert cells[4].find_elements(By.CSS_SELECTOR, ".mini-bar span")
    assert any("door" in words(row.find_elements(By.TAG_NAME, "td")[2].text) for row in rows)
    assert "speech recognition" in text_of(driver, "timeline-timings")

    # 2. clicking a row plays that segment: the player moves to its start
    row = rows[len(rows) // 2]
    start, end = float(row.get_attribute("data-start")), float(row.get_attribute("data-end"))
    assert start > 5.0
    row.click()
    wait_for(driver, lambda d: start - 0.05 <= player_time(d) <= end + 0.5, 20, "the player at the segment")
    assert "playing" in row.get_attribute("class")
    # a segment in the chart plays too
    driver.find_elements(By.CSS_SELECTOR, "#chart svg g.segment .hit")[0].click()
    first = float(rows[0].get_attribute("data-start"))
    wait_for(driver, lambda d: first - 0.05 <= player_time(d) <= float(rows[0].get_attribute("data-end")) + 0.5, 20,
             "the player at the first segment")

    # 3. a short clip afterwards is one utterance again
    predict_from_file(driver, speech_clip[0])
    wait_for(driver, status_is("Transcribed and predicted."), what="the short clip's prediction")
    assert driver.find_element("id", "timeline").get_attribute("hidden")
    assert text_of(driver, "label") in TINY_LABELS and driver.find_element("id", "text-section").is_displayed()


@pytest.mark.skipif(
    not os.environ.get("BIMER_TF_SCREENSHOT_MODEL"),
    reason="set BIMER_TF_SCREENSHOT_MODEL=export/bimer/N to refresh docs/app.png",
)
def test_screenshot_for_the_readme(tmp_path, speech_clip):
    model_dir = Path(os.environ["BIMER_TF_SCREENSHOT_MODEL"])
    process, base = start_app(model_dir, "--asr", "whisper-tiny-offline")
    driver = make_driver(tmp_path / "profile", speech_clip[0])
    try:
        driver.get(base + "/")
        wait_for(driver, lambda d: text_of(d, "model-summary").startswith("Model:"), 30)
        predict_from_file(driver, speech_clip[0])
        wait_for(driver, status_is("Transcribed and predicted."))
        time.sleep(0.5)  # the bars' width transition
        SCREENSHOT.parent.mkdir(exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(900, height + 120)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.skipif(
    not os.environ.get("BIMER_TF_SCREENSHOT_MODEL") or not (SHARED_CORPORA / "ravdess4").is_dir(),
    reason="set BIMER_TF_SCREENSHOT_MODEL=export/bimer/N (and have ../shared/corpora/ravdess4) to refresh "
    "docs/app_timeline.png",
)
def test_timeline_screenshot_for_the_docs(tmp_path, speech_clip):
    """docs/app_timeline.png: 12 RAVDESS sentences (four emotions, two sentences) joined by pauses."""
    model_dir = Path(os.environ["BIMER_TF_SCREENSHOT_MODEL"])
    path, _ = long_recording(tmp_path, count=12)
    process, base = start_app(model_dir, "--asr", "whisper-tiny-offline")
    driver = make_driver(tmp_path / "profile", speech_clip[0])
    try:
        driver.get(base + "/")
        wait_for(driver, lambda d: text_of(d, "model-summary").startswith("Model:"), 30)
        predict_from_file(driver, path)
        wait_for(driver, timeline_shown, 300, "the timeline")
        rows = driver.find_elements("css selector", "#segments tbody tr")
        rows[min(4, len(rows) - 1)].click()  # a segment playing: its row and the playhead show
        time.sleep(1.0)
        driver.execute_script("document.getElementById('playback').pause()")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(900, height + 120)
        time.sleep(0.3)
        driver.save_screenshot(str(TIMELINE_SCREENSHOT))
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)
    assert TIMELINE_SCREENSHOT.stat().st_size > 20_000

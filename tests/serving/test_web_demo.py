"""The web demo in a real headless Chromium: load /ui, super-resolve an upload, get 48 kHz audio back."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from test_clients import free_port

pytest.importorskip("gradio")
pytest.importorskip("selenium")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello_16k.wav"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install)"
)


@pytest.fixture(scope="module")
def demo_url():
    import uvicorn

    from hierspeech2.models import SpeechSR
    from hierspeech2.pipelines import SuperResolution
    from hierspeech2.serving import ServedModels, create_app
    from hierspeech2.serving.demo import mount_demo

    models = ServedModels(
        super_resolution={r: SuperResolution(SpeechSR.from_packaged(r)) for r in (24_000, 48_000)}
    )
    app = mount_demo(create_app(models), [EXAMPLE])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/ui/"
    server.should_exit = True
    thread.join(timeout=10)


def test_super_resolution_in_the_browser(demo_url, tmp_path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(demo_url)
        wait = WebDriverWait(driver, 90)

        def visible_tab(browser):
            tabs = browser.find_elements(By.XPATH, "//button[@role='tab'][contains(., 'Super-resolution')]")
            return next((tab for tab in tabs if tab.is_displayed()), False)

        driver.execute_script("arguments[0].click();", wait.until(visible_tab))
        wait.until(lambda browser: browser.find_elements(By.CSS_SELECTOR, "#sr-input input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#sr-input input[type=file]").send_keys(str(EXAMPLE))
        wait.until(lambda browser: "0:0" in browser.find_element(By.CSS_SELECTOR, "#sr-input").text)
        driver.find_element(By.CSS_SELECTOR, "#sr-run").click()
        link = wait.until(
            lambda browser: [
                a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#sr-output a[href]")
            ]
        )[0]
        driver.save_screenshot(str(tmp_path / "web-demo.png"))
    finally:
        driver.quit()
    audio = httpx.get(link, timeout=30)
    info, source = sf.info(io.BytesIO(audio.content)), sf.info(EXAMPLE)
    assert info.samplerate == 48_000 and info.frames == source.frames * 3
    assert (tmp_path / "web-demo.png").stat().st_size > 10_000

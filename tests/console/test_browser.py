"""The web console end to end in a real Chromium: sign in, the EasyDL flow (model, zip upload, class
table, training, confusion matrix, validation, publishing, then the published API through the official
``baidu-aip`` SDK), a two-speaker transcription (speakers, click-to-seek, SRT download), music tags,
bad input, the language switch, sign-out, and the offline /docs and /redoc. Screenshots of each page go
to the ``screenshots`` folder (``TINGYIN_CONSOLE_SCREENSHOTS=docs/console`` refreshes the committed ones).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import FIXTURES, Server
from tests.conftest import testdata_dir as shared_testdata_dir  # not collected as a test
from tests.transcription.helpers import conversation

pytestmark = pytest.mark.slow
CLASSES = ("dog_bark", "rain", "rooster")
CLIPS_PER_CLASS = 10
SUFFIX = "farm_sounds"


@dataclass
class Console:
    server: Server
    app: dict[str, str]
    page: Any
    shots: Path
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def open(self, route: str) -> None:
        """Go to a console route and wait until that page has rendered."""
        self.page.goto(f"{self.server.url}/console/#{route}")
        self.page.wait_for_function("(hash) => document.body.dataset.pageReady === hash", arg=f"#{route}")

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(300)  # let bars and heat maps finish their transitions
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def error_text(self) -> str:
        box = self.page.get_by_test_id("error").last
        box.wait_for(timeout=60_000)
        return str(box.inner_text())


def training_clips() -> dict[str, list[Path]]:
    """CLIPS_PER_CLASS clips of each class from ../shared/testdata/esc10 when present, else the
    project's own fixtures (8 per class)."""
    shared = shared_testdata_dir()
    if shared is not None and (shared / "esc10" / "manifest.csv").exists():
        chosen: dict[str, list[Path]] = {c: [] for c in CLASSES}
        with (shared / "esc10" / "manifest.csv").open() as handle:
            for row in csv.DictReader(handle):
                if row["label"] in chosen and len(chosen[row["label"]]) < CLIPS_PER_CLASS:
                    chosen[row["label"]].append(shared / "esc10" / row["path"])
        return chosen
    return {c: sorted((FIXTURES / "esc10").glob(f"{c}__*.flac")) for c in CLASSES}


def dataset_zip(clips: dict[str, list[Path]]) -> bytes:
    """One folder per class, plus a duplicate and a folder whose name has a space (rejected)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, paths in clips.items():
            for path in paths[:-1]:  # the last one is added through "add a single file"
                archive.write(path, f"{label}/{path.name}")
        first = clips["dog_bark"][0]
        archive.write(first, "dog_bark/copy_of_first.flac")
        archive.write(first, "dog bark/spaced.flac")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def console(browser: Any, console_server: Server, screenshots: Path) -> Iterator[Console]:
    app = console_server.create_app("console-demo")
    # bypass_csp: Playwright evaluates its wait predicates as strings, which the console's CSP
    # (script-src 'self', checked in test_console_api) rightly refuses.
    context = browser.new_context(
        locale="zh-CN", viewport={"width": 1360, "height": 900}, accept_downloads=True, bypass_csp=True
    )
    result = Console(console_server, app, context.new_page(), screenshots)

    def offline_only(route: Any) -> None:
        # Works offline: every request must stay on this server; anything else is recorded and refused.
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            result.external.append(f"{route.request.resource_type} {url}")
            route.abort()

    context.route("**/*", offline_only)
    result.page.on("pageerror", lambda exc: result.errors.append(str(exc)))
    yield result
    context.close()


def test_sign_in_and_overview(console: Console) -> None:
    page = console.page
    page.goto(console.server.url + "/")  # redirects to /console/
    assert page.url.endswith("/console/")
    page.get_by_test_id("api-key").wait_for()
    console.shot("00-sign-in")
    page.get_by_test_id("api-key").fill(console.app["api_key"])
    page.get_by_test_id("secret-key").fill("wrong-secret")
    page.get_by_test_id("signin").click()
    assert "secret" in console.error_text()
    page.get_by_test_id("secret-key").fill(console.app["secret_key"])
    page.get_by_test_id("signin").click()
    page.get_by_test_id("app-name").wait_for()
    assert page.get_by_test_id("app-name").inner_text() == "console-demo"
    cookie = next(c for c in page.context.cookies() if c["name"] == "tingyin_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session
    # Overview: masked secret, the app's keys, examples pointing at this server.
    page.get_by_test_id("api-key").wait_for()
    assert page.get_by_test_id("api-key").inner_text() == console.app["api_key"]
    masked = page.get_by_test_id("secret-key").inner_text()
    assert console.app["secret_key"] not in masked and "•" in masked
    assert console.server.url in page.locator("pre").first.inner_text()


def test_sound_model_flow(console: Console, tmp_path: Path) -> None:
    page, server = console.page, console.server
    clips = training_clips()

    console.open("/sound/models")
    page.get_by_test_id("model-name").fill("farm")
    page.get_by_test_id("model-description").fill("dog, rain, rooster")
    page.get_by_test_id("create-model").click()
    page.get_by_test_id("train-link").wait_for()
    model_id = int(re.search(r"/sound/models/(\d+)", page.url).group(1))  # type: ignore[union-attr]

    console.open("/sound/datasets")
    page.get_by_test_id("dataset-name").fill("farm_clips")
    page.get_by_test_id("create-dataset").click()
    page.get_by_test_id("zip-file").wait_for()
    dataset_id = int(re.search(r"/sound/datasets/(\d+)", page.url).group(1))  # type: ignore[union-attr]

    archive = tmp_path / "farm.zip"
    archive.write_bytes(dataset_zip(clips))
    page.get_by_test_id("zip-file").set_input_files(str(archive))
    page.get_by_test_id("upload-zip").click()
    page.get_by_test_id("import-report").wait_for(timeout=300_000)
    expected = {label: len(paths) - 1 for label, paths in clips.items()}
    assert int(page.get_by_test_id("accepted-count").inner_text()) == sum(expected.values())
    assert int(page.get_by_test_id("rejected-count").inner_text()) == 1
    assert "dog bark" in page.get_by_test_id("import-report").inner_text()
    for label, count in expected.items():
        assert page.get_by_test_id(f"count-{label}").inner_text() == str(count)

    # One more clip through "add a single file".
    page.get_by_test_id("single-class").fill("rooster")
    page.get_by_test_id("single-file").set_input_files(str(clips["rooster"][-1]))
    page.get_by_test_id("add-clip").click()
    page.wait_for_function(
        f"document.querySelector('[data-testid=count-rooster]').textContent === '{expected['rooster'] + 1}'"
    )
    # The clip list of a class plays its clips; deleting one updates the table.
    page.locator("[data-class=rain] button.link").click()
    rows = page.locator("[data-testid=clips] tr[data-clip]")
    rows.first.wait_for()
    assert rows.count() == expected["rain"]
    assert page.locator("[data-testid=clips] audio").count() == expected["rain"]
    page.wait_for_function("document.querySelector('[data-testid=clips] audio').src.includes('/audio')")
    rows.first.locator("input[type=checkbox]").check()
    page.get_by_test_id("delete-clips").click()
    page.wait_for_function(
        f"document.querySelector('[data-testid=count-rain]').textContent === '{expected['rain'] - 1}'"
    )
    console.shot("03-dataset")

    # Train V1 on all three classes; the page follows the job.
    console.open(f"/sound/train?model={model_id}&dataset={dataset_id}")
    assert page.locator("[data-testid=train-classes] input:checked").count() == 3
    page.get_by_test_id("start-training").click()
    page.get_by_test_id("train-status").locator(".bar").wait_for()
    console.shot("04-train")
    page.get_by_test_id("see-report").wait_for(timeout=900_000)
    page.get_by_test_id("see-report").click()

    matrix = page.get_by_test_id("confusion-matrix")
    matrix.wait_for()
    cells = matrix.locator("td.cell")
    assert cells.count() == 9
    held_out = sum(int(c) for c in cells.all_inner_texts())
    assert held_out >= 3
    assert page.get_by_test_id("per-class").locator("tbody tr").count() == 3
    assert page.get_by_test_id("accuracy").inner_text().endswith("%")
    console.shot("05-version-report")

    console.open(f"/sound/models/{model_id}")
    page.get_by_test_id("versions").wait_for()
    console.shot("02-model")

    # Validate a rooster clip: bars for every class, best first; the threshold dims the weak ones.
    console.open(f"/sound/validate?model={model_id}&version=1")
    rooster = clips["rooster"][0]
    page.get_by_test_id("validate-file").set_input_files(str(rooster))
    page.get_by_test_id("validate").click()
    results = page.get_by_test_id("results")
    results.wait_for(timeout=120_000)
    names = results.locator(".bar-row").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert sorted(names) == sorted(CLASSES) and names[0] == "rooster"
    slide = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }"
    page.get_by_test_id("threshold").evaluate(slide, "0.999")
    assert results.locator(".bar-row.below").count() >= 2
    page.get_by_test_id("threshold").evaluate(slide, "0.05")
    console.shot("06-validate")

    # Publish V1, then call the published API with Baidu's official SDK.
    console.open(f"/sound/services?model={model_id}&version=1")
    page.get_by_test_id("service-suffix").fill(SUFFIX)
    page.get_by_test_id("service-name").fill("Farm sounds")
    page.get_by_test_id("publish").click()
    page.locator(f"[data-service={SUFFIX}]").wait_for()
    url = page.locator(f"[data-service={SUFFIX}] [data-testid=service-url]").inner_text()
    assert url == f"{server.url}/rpc/2.0/ai_custom/v1/sound_cls/{SUFFIX}"
    console.shot("07-publish")

    from aip.easydl import EasyDL

    client = EasyDL(console.app["app_id"], console.app["api_key"], console.app["secret_key"])
    client._AipBase__accessTokenUrl = f"{server.url}/oauth/2.0/token"
    answer = client.predictSound(url, rooster.read_bytes(), {"top_num": 3})
    assert answer["results"][0]["name"] == "rooster", answer

    # V2 iterates from V1; the version page shows both reports side by side; the service swaps to V2.
    console.open(f"/sound/train?model={model_id}&dataset={dataset_id}")
    page.get_by_test_id("train-base").select_option("1")
    page.get_by_test_id("start-training").click()
    page.get_by_test_id("see-report").wait_for(timeout=900_000)
    console.open(f"/sound/models/{model_id}/versions/2?with=1")
    for version in (1, 2):
        page.get_by_test_id(f"report-V{version}").get_by_test_id("confusion-matrix").wait_for()
    console.shot("05b-compare-versions")
    console.open("/sound/services")
    service = page.locator(f"[data-service={SUFFIX}]")
    service.get_by_test_id("swap-version").select_option("2")
    service.get_by_test_id("swap").click()
    page.wait_for_function(
        "(s) => document.querySelector(`[data-service=${s}]`)?.textContent.includes('V2')", arg=SUFFIX
    )
    assert client.predictSound(url, rooster.read_bytes(), {"top_num": 3})["results"][0]["name"] == "rooster"

    # The calls show on the overview's usage table (checked below); then take the service offline.
    console.open("/sound/services")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id(f"unpublish-{SUFFIX}").click()
    page.locator(f"[data-service={SUFFIX}]").wait_for(state="detached")
    assert client.predictSound(url, rooster.read_bytes(), {"top_num": 3})["error_code"] == 216102

    console.open("/overview")
    page.get_by_test_id("usage-table").wait_for()
    assert f"easydl:{SUFFIX}" in page.get_by_test_id("usage-table").inner_text()
    console.shot("01-overview")
    console.state["model_id"], console.state["dataset_id"] = model_id, dataset_id


def test_validate_from_the_microphone(console: Console, browser: Any) -> None:
    """Record from a (fake) microphone: Chromium's test tone goes through MediaRecorder (WebM/Opus) to
    the validation endpoint and comes back as bars."""
    from tests.console.conftest import CHROMIUM_FLAGS, chromium_path

    model_id = console.state.get("model_id")
    if model_id is None:
        pytest.skip("needs the model of the sound flow")
    playwright_browser = browser.browser_type.launch(
        executable_path=chromium_path(),
        args=[*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
    )
    try:
        context = playwright_browser.new_context(locale="en-US", bypass_csp=True)
        context.grant_permissions(["microphone"], origin=console.server.url)
        answer = context.request.post(
            f"{console.server.url}/v1/session",
            data={"api_key": console.app["api_key"], "secret_key": console.app["secret_key"]},
        )
        assert answer.ok
        page = context.new_page()
        page.goto(f"{console.server.url}/console/#/sound/validate?model={model_id}&version=1")
        record = page.get_by_role("button", name="Record")
        record.click()
        page.get_by_role("button", name="Stop and classify").wait_for()
        page.wait_for_timeout(2500)
        page.get_by_role("button", name="Stop and classify").click()
        bars = page.get_by_test_id("results").locator(".bar-row")
        bars.first.wait_for(timeout=120_000)
        assert bars.count() == len(CLASSES)
    finally:
        playwright_browser.close()


def test_bad_input_shows_the_api_message(console: Console, tmp_path: Path) -> None:
    page = console.page
    dataset_id = console.state.get("dataset_id")
    if dataset_id is None:
        pytest.skip("needs the dataset of the sound flow")
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("this is not a zip archive")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")

    console.open(f"/sound/datasets/{dataset_id}")
    page.get_by_test_id("zip-file").set_input_files(str(not_zip))
    page.get_by_test_id("upload-zip").click()
    assert "not a zip archive" in console.error_text()
    page.get_by_test_id("zip-file").set_input_files(str(empty))
    page.get_by_test_id("upload-zip").click()
    page.wait_for_function("document.querySelector('[data-testid=error]').textContent.includes('empty')")
    assert "empty" in console.error_text()

    page.get_by_test_id("single-class").fill("dog bark")
    page.get_by_test_id("single-file").set_input_files(str(training_clips()["dog_bark"][0]))
    page.get_by_test_id("add-clip").click()
    page.wait_for_function("document.querySelector('[data-testid=error]').textContent.includes('class name')")
    assert "letters, digits and underscores" in console.error_text()
    assert page.get_by_test_id("class-table").is_visible()  # the page is still there

    console.open("/sound/models")
    page.get_by_test_id("model-name").fill("my model")
    page.get_by_test_id("create-model").click()
    assert "model name" in console.error_text()
    console.shot("08-bad-input")


def test_transcription_with_speakers(console: Console, tmp_path: Path) -> None:
    page = console.page
    wav, turns = conversation()
    recording = tmp_path / "two_speakers.wav"
    recording.write_bytes(wav)

    console.open("/transcriptions")
    page.get_by_test_id("audio-file").set_input_files(str(recording))
    page.get_by_test_id("language").select_option("zh")
    page.get_by_test_id("speakers").select_option("auto")
    page.get_by_test_id("transcribe").click()
    page.wait_for_url(re.compile(r".*#/transcriptions/[\w-]+$"))
    page.get_by_test_id("transcript").wait_for(timeout=600_000)
    job_id = page.url.rsplit("/", 1)[1]

    chips = page.get_by_test_id("speakers").locator(".speaker-chip")
    assert chips.count() == len({speaker for _, _, speaker in turns}) == 2
    page.wait_for_function("document.querySelector('[data-testid=player]').readyState >= 1")
    words = page.locator(".word")
    assert words.count() > 10
    target = words.nth(words.count() * 2 // 3)
    start_s = int(target.get_attribute("data-start") or 0) / 1000
    assert start_s > 1.0
    target.click()
    page.wait_for_function(
        f"Math.abs(document.querySelector('[data-testid=player]').currentTime - {start_s}) < 0.5"
    )
    page.evaluate("document.querySelector('[data-testid=player]').pause()")
    console.shot("10-transcript")

    with page.expect_download() as download:
        page.locator("[data-testid=downloads] a[data-format=srt]").click()
    srt = Path(download.value.path()).read_text(encoding="utf-8")
    cues = re.findall(
        r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+?)(?:\n\n|\n?$)", srt, re.S
    )
    assert len(cues) >= len(turns) - 1, srt
    starts = [int(c[1]) * 3600 + int(c[2]) * 60 + int(c[3]) + int(c[4]) / 1000 for c in cues]
    assert starts == sorted(starts) and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    assert {re.match(r"Speaker (\d+)", c[9]).group(1) for c in cues} == {"1", "2"}  # type: ignore[union-attr]

    console.open("/transcriptions")
    row = page.locator(f"tr[data-job='{job_id}']")
    row.wait_for()
    assert "2" in row.inner_text()
    console.shot("09-transcriptions")

    # Deleted from its page: gone from the list, and from the server (text and audio).
    console.open(f"/transcriptions/{job_id}")
    page.get_by_test_id("transcript").wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete-transcription").click()
    page.wait_for_url(re.compile(r".*#/transcriptions\?r=\d+$"))
    page.get_by_test_id("audio-file").wait_for()
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    assert page.request.get(f"{console.server.url}/v1/transcriptions/{job_id}").status == 404
    assert page.request.get(f"{console.server.url}/v1/transcriptions/{job_id}/audio").status == 404


def test_music_tags_and_not_music(console: Console) -> None:
    page = console.page
    console.open("/music")
    page.get_by_test_id("music-file").set_input_files(str(FIXTURES / "music" / "loop_garzul_16k.flac"))
    page.get_by_test_id("tag-music").click()
    dimensions = page.locator("[data-dimension]")
    dimensions.first.wait_for(timeout=300_000)
    assert dimensions.count() == 4
    genre = page.locator("[data-dimension=MusicTaggingGenre34] .bar-row")
    assert genre.count() > 3
    assert page.get_by_test_id("vocal").inner_text() in ("纯音乐", "有人声")
    assert page.get_by_test_id("download-embedding").is_visible()
    console.shot("11-music")

    page.get_by_test_id("music-file").set_input_files(str(FIXTURES / "music" / "LJ001-0182_speech.flac"))
    page.get_by_test_id("tag-music").click()
    page.get_by_test_id("not-music").wait_for(timeout=300_000)
    assert page.locator("[data-dimension]").count() == 0
    console.shot("12-music-not-music")


def test_language_switch_and_sign_out(console: Console) -> None:
    page = console.page
    console.open("/sound/models")
    nav = page.locator("[data-nav=nav_models]")
    assert nav.inner_text() == "我的模型"
    page.get_by_test_id("lang").click()
    page.wait_for_function("document.querySelector('[data-nav=nav_models]').textContent === 'My models'")
    page.get_by_test_id("lang").click()
    page.wait_for_function("document.querySelector('[data-nav=nav_models]').textContent === '我的模型'")
    page.get_by_test_id("signout").click()
    page.get_by_test_id("signin").wait_for()
    assert page.request.get(f"{console.server.url}/v1/session").status == 401
    # Signing in with the app token works too.
    page.get_by_test_id("use-token").click()
    page.get_by_test_id("app-token").fill(console.app["app_token"])
    page.get_by_test_id("signin").click()
    page.get_by_test_id("app-name").wait_for()


def test_everything_stayed_offline(console: Console) -> None:
    page = console.page
    page.goto(f"{console.server.url}/docs")
    page.locator(".swagger-ui .info").wait_for(timeout=60_000)
    assert "/v1/session" in page.content() or page.locator(".opblock").count() > 10
    page.goto(f"{console.server.url}/redoc")
    page.locator(".api-content").wait_for(timeout=60_000)
    # ReDoc's "powered by" badge links an image on its CDN; nothing else may leave the machine.
    leaked = [request for request in console.external if "cdn.redoc.ly/redoc/logo-mini.svg" not in request]
    assert leaked == [], leaked
    assert console.errors == [], console.errors

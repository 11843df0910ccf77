"""The web dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright),
against the real API over HTTP and a real Celery worker training real cpu-tiny jobs.

1. No key: upload a zip through the file input (a refused upload shows the server's detail, an
   accepted one its warnings), start a job from the form, watch the progress bar driven by the event
   stream to 100 %, see the curves and the sample grid, sample a grid and an interpolation GIF, run the
   memorization check, and see API errors in the page.
2. With an API key (a second API process over the same storage and worker, with a static key): the
   page asks for the key, everything works once it is saved, the job page while training (screenshot),
   cancel, and a checkpoint download whose bytes match the stored checksum. The key never appears in
   any URL the browser requested.

Screenshots go to $DIGGAN_SCREENSHOTS (default: the test's tmp_path).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.harness import LiveServer, Worker, make_settings, png_bytes

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RES = 64  # cpu-tiny's generator resolution
TRAIN_TIMEOUT_MS = 240_000

# Records every value the job page's progress bar takes (MutationObserver: oldValue of each change).
PROGRESS_RECORDER = """
window.__progress = [];
new MutationObserver((records) => {
  for (const r of records) if (r.target.id === "job-progress") window.__progress.push(Number(r.oldValue));
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"], attributeOldValue: true});
"""


@pytest.fixture(scope="module")
def browser():
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI; `make test` installs it (make browser)")
        pytest.skip(f"{CHROMIUM} not installed; `make browser` (run by `make test`) installs Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("pip install playwright (dev extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Settings over one storage + broker, and one worker for both API processes."""
    root = tmp_path_factory.mktemp("dash")
    settings = make_settings(root, worker_heartbeat_s=1.0)
    worker = Worker(settings, root / "worker.log").start()
    try:
        yield settings, worker
    finally:
        worker.stop()


@pytest.fixture
def shots(tmp_path) -> Path:
    d = Path(os.environ.get("DIGGAN_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def dataset_zip(path: Path, n: int = 8) -> Path:
    """n images plus two things the server skips with a warning (macOS junk, a text file)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"faces/{i:03d}.png", png_bytes(48, color=(40 + 20 * i, 90, 160), seed=i))
        zf.writestr("faces/.DS_Store", b"\0junk")
        zf.writestr("faces/notes.txt", b"not an image")
    return path


def new_page(browser, url: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(PROGRESS_RECORDER)
    page.on("dialog", lambda d: d.accept())  # confirm() of cancel
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))  # uncaught JS exceptions fail the test
    page.goto(url)
    return page, errors


def upload(page, path: Path) -> None:
    page.click("#nav a[data-nav=datasets]")
    page.set_input_files("#dataset-files", str(path))


def start_job(page, dataset_id: str, kimg: float, metrics: bool, shot: Path | None = None) -> str:
    page.click(f"tr[data-dataset={dataset_id}] a:text('Train')")
    page.wait_for_selector("#job-form")
    assert page.input_value("#job-dataset") == dataset_id
    page.select_option("#job-preset", "cpu-tiny")
    page.fill("#job-kimg", str(kimg))
    page.click("#job-form summary")  # the Schedule section
    page.fill("#job-tick-kimg", "0.016")
    page.fill("#job-snapshot-kimg", "0.032")
    assert page.is_checked("#reg-diggan") and page.is_checked("#reg-r1")  # the preset's regularizers
    if metrics:
        page.check("#job-kid")
        page.fill("#job-metrics-num-gen", "16")
    if shot:
        page.screenshot(path=str(shot), full_page=True)
    page.click("#job-submit")
    page.wait_for_url("**/ui/#/jobs/job_*")
    return page.url.rsplit("/", 1)[-1]


def natural_width(page, selector: str) -> int:
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


def wait_image(page, selector: str, width: int | None = None, timeout: float = 60_000) -> None:
    cond = f"el.complete && el.naturalWidth {'== ' + str(width) if width else '> 0'}"
    page.wait_for_function(f"() => {{ const el = document.querySelector('{selector}'); return el && !el.hidden && {cond}; }}",
                           timeout=timeout)


def test_dashboard_upload_train_watch_and_sample(browser, stack, tmp_path, shots):
    settings, worker = stack
    with LiveServer(settings) as srv:
        page, js_errors = new_page(browser, srv.url + "/")  # / redirects to the dashboard
        assert "/ui/" in page.url
        page.wait_for_selector("text=No jobs yet")

        # A refused upload: the server's detail is in the page.
        bad = tmp_path / "notes.txt"
        bad.write_text("hello")
        upload(page, bad)
        refusal = page.wait_for_selector("#upload-result .msg.error")
        assert "Upload refused" in refusal.inner_text() and len(refusal.inner_text()) > 30

        # An accepted zip: summary with its warnings, and the dataset in the list.
        worker.wait_ready()
        page.set_input_files("#dataset-files", str(dataset_zip(tmp_path / "faces.zip")))
        ok = page.wait_for_selector("#upload-result .msg.ok")
        text = ok.inner_text()
        assert "8 images" in text and "hidden/system file" in text and "non-image file" in text, text
        ds_id = ok.get_attribute("data-dataset")
        row = page.wait_for_selector(f"tr[data-dataset={ds_id}]")
        assert "faces" in row.inner_text() and "2 warning(s)" in row.inner_text()
        page.screenshot(path=str(shots / "datasets.png"), full_page=True)

        job_id = start_job(page, ds_id, kimg=0.064, metrics=True, shot=shots / "new-job.png")
        page.wait_for_selector("#job-status .s-succeeded", timeout=TRAIN_TIMEOUT_MS)
        # The bar moved through the stream's ticks to 100 %.
        seen = page.evaluate("window.__progress") + [float(page.get_attribute("#job-progress", "aria-valuenow"))]
        assert seen[-1] == 100 and any(0 < v < 100 for v in seen), seen
        assert "100%" in page.inner_text("#job-progress-text") and "ETA done" in page.inner_text("#job-progress-text")

        # Final curves, grid, checkpoints and KID.
        page.wait_for_selector("#latest-grid-caption:has-text('(final)')", timeout=60_000)
        wait_image(page, "#latest-grid", 4 * (RES + 2) + 2)
        page.wait_for_selector("#curves[data-status=succeeded]", timeout=60_000)
        wait_image(page, "#curves")
        assert len(page.query_selector_all("#checkpoints tr[data-checkpoint]")) == 2
        page.wait_for_function("() => /\\d/.test(document.getElementById('t-kid').textContent)")
        for tile in ("#t-loss-g", "#t-loss-d", "#t-dig"):
            assert page.inner_text(tile) != "–"

        # An API error shows in the page: psi outside the server's range.
        page.fill("#sampler-psi", "9")
        page.click("#sampler-go")
        err = page.wait_for_selector(".imgwrap:has(#sampler-grid) .msg.error")
        assert "psi must be within" in err.inner_text()

        # Sampler: a 2x2 grid, then an animated interpolation GIF.
        page.fill("#sampler-psi", "0.7")
        page.fill("#sampler-seeds", "0-3")
        assert page.eval_on_selector_all("#sampler-checkpoint option", "os => os.map(o => o.value)") == [
            "latest", "best", "ckpt-00000.064.pt", "ckpt-00000.032.pt"]
        page.select_option("#sampler-checkpoint", "ckpt-00000.032.pt")
        page.click("#sampler-go")
        wait_image(page, "#sampler-grid", 2 * (RES + 2) + 2)
        assert page.is_hidden(".imgwrap:has(#sampler-grid) .msg.error")
        assert "ckpt-00000.032.pt" in page.inner_text("#sampler-grid-note")
        page.fill("#interp-a", "3")
        page.fill("#interp-b", "9")
        page.fill("#interp-steps", "6")
        page.click("#interp-go")
        wait_image(page, "#interp-gif", RES)
        with page.expect_download() as dl:
            page.click("#interp-save")
        gif = Image.open(io.BytesIO(Path(dl.value.path()).read_bytes()))
        assert gif.format == "GIF" and gif.size == (RES, RES) and gif.n_frames == 6 + 4  # there and back

        # Memorization check: generated samples beside their nearest training images.
        page.fill("#mem-n", "4")
        page.click("#mem-go")
        wait_image(page, "#mem-grid", timeout=120_000)
        assert "samples" in page.inner_text("#mem-summary")
        page.screenshot(path=str(shots / "job-finished.png"), full_page=True)

        # The job list shows it done.
        page.click("#nav a[data-nav=jobs]")
        row = page.wait_for_selector(f"tr[data-job={job_id}]")
        assert "succeeded" in row.inner_text() and "100%" in row.inner_text()
        page.screenshot(path=str(shots / "jobs.png"), full_page=True)
        assert not js_errors, js_errors
        page.context.close()


def test_dashboard_with_api_key_watch_cancel_download(browser, stack, tmp_path, shots):
    settings, worker = stack
    key = "dashboard-test-key-" + "x" * 24
    keyed = settings.model_copy(update={"api_keys": [f"carol:{hashlib.sha256(key.encode()).hexdigest()}"]})
    with LiveServer(keyed) as srv:
        urls: list[str] = []
        page, js_errors = new_page(browser, srv.url + "/ui/")
        page.on("request", lambda r: urls.append(r.url))
        banner = page.wait_for_selector("#banner:has-text('needs an API key')")
        assert "missing API key" in banner.inner_text()

        page.fill("#apikey", key)
        page.click("#savekey")
        page.wait_for_selector("text=No jobs yet")
        assert page.is_hidden("#banner") and "key saved" in page.inner_text("#keystate")

        worker.wait_ready()
        # This time by drag and drop: a drop event carrying the zip, as a browser's drag delivers it.
        page.click("#nav a[data-nav=datasets]")
        data = base64.b64encode(dataset_zip(tmp_path / "keyed.zip").read_bytes()).decode()
        transfer = page.evaluate_handle("""(b64) => {
            const dt = new DataTransfer();
            const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
            dt.items.add(new File([bytes], "keyed.zip", {type: "application/zip"}));
            return dt;
        }""", data)
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
        ds_id = page.wait_for_selector("#upload-result .msg.ok").get_attribute("data-dataset")
        page.wait_for_selector(f"tr[data-dataset={ds_id}]")

        # A long job: still training when we look at it, then cancelled.
        job_id = start_job(page, ds_id, kimg=5, metrics=False)
        page.wait_for_selector("#job-status .s-running", timeout=TRAIN_TIMEOUT_MS)
        wait_image(page, "#latest-grid", 4 * (RES + 2) + 2, timeout=TRAIN_TIMEOUT_MS)
        wait_image(page, "#curves")
        page.wait_for_function("() => Number(document.getElementById('job-progress').getAttribute('aria-valuenow')) > 0")
        assert "ETA" in page.inner_text("#job-progress-text") and page.inner_text("#t-loss-g") != "–"
        page.screenshot(path=str(shots / "job-training.png"), full_page=True)

        page.click("#job-cancel")
        page.wait_for_selector("#job-status .s-canceled", timeout=120_000)
        page.wait_for_selector("#checkpoints tr[data-checkpoint]:has(.s-final)")
        final = page.get_attribute("#checkpoints tr[data-checkpoint]:has(.s-final)", "data-checkpoint")

        with page.expect_download() as dl:
            page.click(f"#checkpoints tr[data-checkpoint='{final}'] button[data-download]")
        body = Path(dl.value.path()).read_bytes()
        listed = srv.client.get(f"/v1/jobs/{job_id}/checkpoints", headers={"X-API-Key": key}).json()["data"]
        assert hashlib.sha256(body).hexdigest() == next(c["sha256"] for c in listed if c["name"] == final)
        assert dl.value.suggested_filename == f"{job_id}-{final}"

        assert not [u for u in urls if key in u], "the API key leaked into a URL"
        assert not js_errors, js_errors
        page.context.close()

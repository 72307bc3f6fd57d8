"""``index.html`` in a real browser: headless Chromium, driven over the DevTools protocol.

The page is loaded at 1400 px width and checked as a reader would meet it: every image loads
(``naturalWidth > 0``), every link points at a file of the report (or an anchor on the page), the
browser logs no console error, nothing makes the page wider than the window, no table needs
horizontal scrolling (the verdict table and the per-layer densities included), and no verdict
cell answers a question that means nothing for its method (``beats random`` for random, ...). Chromium is
driven with ``--remote-debugging-pipe`` (JSON messages on file descriptors 3 and 4), so the test
needs nothing beyond the standard library. Skipped, with the reason, where Chromium is absent
(Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_analysis import around, seeds, write_run

from earlyprune import cli

WIDTH = 1400
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-pipe",
)
# What the page reports about itself once loaded (evaluated in the page).
PROBE = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth,
                                           shown: i.getBoundingClientRect().width})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  tables: [...document.querySelectorAll('table')].map(t => ({
    name: t.className || (t.caption ? t.caption.textContent.slice(0, 40) : 'table'),
    right: t.getBoundingClientRect().right,
    boxScroll: t.parentElement.scrollWidth, boxClient: t.parentElement.clientWidth})),
  cells: [...document.querySelectorAll('table.verdicts td[data-check]')].map(td => ({
    method: td.closest('tr').dataset.method, check: td.dataset.check,
    text: td.textContent.trim(), title: td.title})),
  scrollWidth: document.documentElement.scrollWidth,
  clientWidth: document.documentElement.clientWidth,
  fontSize: parseFloat(getComputedStyle(document.body).fontSize),
  title: document.title,
})"""


# (method, check) pairs of the fixture whose question means nothing (see earlyprune.analysis.verdicts):
# written out here, not computed, so that the test does not trust the code it checks.
MEANINGLESS = {
    ("random", "beats random"),
    ("random", "beats its own allocation with random placement (shuffle)"),
    ("random", "sensitive to inversion"),
    ("erk", "beats ERK with random placement"),
    ("erk", "beats its own allocation with random placement (shuffle)"),
    ("erk", "sensitive to inversion"),  # not even run: still no verdict
    ("magnitude", "beats magnitude"),
}


def chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


pytestmark = pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)


class Browser:
    """A headless Chromium and one page, spoken to over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path, timeout: float = 20.0) -> None:
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()

        def wire() -> None:  # in the child: fd 3 is what it reads, fd 4 what it writes
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.deadline = time.monotonic() + timeout
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, params: dict | None = None) -> dict:
        return self.call(method, params, self.session)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def inspect(index: Path, profile: Path) -> tuple[dict[str, Any], list[str]]:
    """Loads ``index`` at ``WIDTH`` px; returns the page's self-description and its errors."""
    browser = Browser(profile)
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.page(f"{domain}.enable")
        metrics = {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        browser.page("Emulation.setDeviceMetricsOverride", metrics)
        browser.page("Page.navigate", {"url": index.resolve().as_uri()})
        browser.wait_for("Page.loadEventFired")
        value = browser.page("Runtime.evaluate", {"expression": PROBE, "returnByValue": True})
        facts = json.loads(value["result"]["value"])
    finally:
        browser.close()
    errors = []
    for event in browser.events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
            errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
    return facts, errors


def problems(index: Path, facts: dict[str, Any], errors: list[str]) -> list[str]:
    """Everything a reader would trip over, one line each (empty: the page is fine)."""
    found = [f"console: {e}" for e in errors]
    for image in facts["images"]:
        if image["w"] <= 0:
            found.append(f"image does not load: {image['src']}")
        elif image["shown"] < 300:
            found.append(f"image squeezed to {image['shown']:.0f} px: {image['src']}")
    for href in facts["links"]:
        if href.startswith("#"):
            if href[1:] not in facts["ids"]:
                found.append(f"link to a missing anchor: {href}")
        elif "://" in href or not (index.parent / href).is_file():
            found.append(f"broken link: {href}")
    if facts["scrollWidth"] > facts["clientWidth"]:
        found.append(f"page is {facts['scrollWidth']} px wide in a {WIDTH} px window")
    for table in facts["tables"]:
        if table["right"] > facts["clientWidth"] or table["boxScroll"] > table["boxClient"]:
            found.append(f"table needs horizontal scrolling: {table['name']}")
    for cell in facts["cells"]:
        where = f"{cell['method']} / {cell['check']}"
        if (cell["method"], cell["check"]) in MEANINGLESS and cell["text"] != "—":
            found.append(f"verdict where the question means nothing: {where}: {cell['text']}")
        if re.search(r"[+−]\s?\d", cell["text"]):
            found.append(f"signed number instead of words: {where}: {cell['text']}")
    if facts["fontSize"] < 12:
        found.append(f"body text is {facts['fontSize']} px")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with every kind of figure, FLOPs, masks (agreement) and one failed run."""
    root = tmp_path_factory.mktemp("browser")
    store = root / "store"
    vgg = {"model": "vgg16", "preset": "vgg16_cifar10"}  # no layer/collapse data: fewer figures
    seeds(store, "dense", [0.920, 0.922, 0.918], method="dense", **vgg)
    methods = ("random", "magnitude", "snip", "magnitude_after_training", "erk")
    grid = (0.2, 0.488, 0.672)
    for i, method in enumerate(methods):
        for j, s in enumerate(grid):
            seeds(
                store,
                f"{method}{s}",
                around(0.9 - 0.01 * j + 0.006 * i),
                method=method,
                sparsity=s,
                **vgg,
            )
    # Ablations of random and ERK too: questions that mean nothing for them, which the page
    # must not answer.
    for method, ablation in (
        ("snip", "shuffle"),
        ("snip", "invert"),
        ("random", "shuffle"),
        ("random", "invert"),
        ("erk", "shuffle"),
    ):
        for s in grid:
            seeds(
                store,
                f"{method}-{ablation}{s}",
                around(0.89),
                method=method,
                sparsity=s,
                ablation=ablation,
                **vgg,
            )
    write_run(store, "failed", status="failed", method="snip", sparsity=0.2, seed=9, **vgg)
    generator = torch.Generator().manual_seed(0)
    for folder in store.iterdir():
        result = json.loads((folder / "result.json").read_text())
        spec = result["spec"]
        if spec["method"] == "dense":
            continue
        density = 1.0 - spec["sparsity"]
        mask = {
            "conv1.weight": torch.rand(16, 3, 3, 3, generator=generator) < density,
            "fc.weight": torch.rand(10, 64, generator=generator) < density,
        }
        torch.save(mask, folder / "mask.pt")
        result["layer_density"] = {n: float(m.float().mean()) for n, m in mask.items()}
        result["layer_numel"] = {n: m.numel() for n, m in mask.items()}
        kept = sum(int(m.sum()) for m in mask.values())
        result["flops"] = {"dense": 1000, "pruned": int(1000 * kept / 1072), "per_layer": {}}
        result["effective_density"] = density * 0.95
        (folder / "result.json").write_text(json.dumps(result))
    # Through the command line, as a user makes it (with the free y-range option).
    assert cli.main(["report", str(store), "--out", str(root / "report"), "--free-y"]) == 0
    return root / "report" / "index.html"


@pytest.mark.slow
def test_report_reads_well_in_chromium(report, tmp_path):
    facts, errors = inspect(report, tmp_path / "profile")
    assert facts["title"] == "earlyprune report"
    kinds = {Path(i["src"]).name.split("_vgg16")[0] for i in facts["images"]}
    assert {"fig_accuracy", "fig_flops", "fig_ablations", "fig_agreement", "fig_layers"} <= kinds
    assert any(h.endswith(".pdf") for h in facts["links"])
    assert {"verdicts", "layers"} <= {t["name"] for t in facts["tables"]}
    cells = facts["cells"]  # one per method × sparsity × check
    pointless = [c for c in cells if (c["method"], c["check"]) in MEANINGLESS]
    assert {(c["method"], c["check"]) for c in pointless} == MEANINGLESS  # each has its cells
    assert all(c["title"] for c in pointless)  # an em dash saying why (checked in `problems`)
    answered = [c["text"] for c in cells if (c["method"], c["check"]) not in MEANINGLESS]
    assert answered and all(
        t.split(":")[0] in ("yes", "no", "unclear") or t == "not run" for t in answered
    )
    assert any(" points above " in t for t in answered)
    assert any("accuracy falls " in t and " when inverted" in t for t in answered)
    assert problems(report, facts, errors) == []


@pytest.mark.slow
def test_the_browser_check_catches_a_broken_page(report, tmp_path):
    """The checks can fail: a missing figure, a dead link and a too-wide block are all caught."""
    broken = tmp_path / "broken"
    shutil.copytree(report.parent, broken)
    image = sorted(broken.glob("fig_*.png"))[0]
    image.unlink()
    page = (broken / "index.html").read_text(encoding="utf-8")
    page = page.replace(
        "</body>", '<a href="nowhere.csv">x</a><div style="width:3000px">w</div></body>'
    )
    # A verdict where the question means nothing, a signed number, and a table too wide for
    # the window inside a scrolling box.
    random_row = page.index('data-method="random"')
    dash = page.index('data-check="beats random"', random_row)
    page = page[:dash] + page[dash:].replace(">—<", ">yes: 1.0 points above random<", 1)
    page = page.replace("<b>yes</b>: ", "<b>yes</b>: +4.0 points, ", 1)
    page = page.replace('<table class="layers">', '<table class="layers" style="width:2000px">')
    (broken / "index.html").write_text(page, encoding="utf-8")
    facts, errors = inspect(broken / "index.html", tmp_path / "profile")
    found = problems(broken / "index.html", facts, errors)
    assert f"image does not load: {image.name}" in found
    assert "broken link: nowhere.csv" in found
    assert any(line.startswith("page is ") for line in found)
    assert "table needs horizontal scrolling: layers" in found
    assert any(
        line.startswith("verdict where the question means nothing: random / beats random")
        for line in found
    )
    assert any(line.startswith("signed number instead of words") for line in found)
    assert any("ERR_FILE_NOT_FOUND" in line for line in found)  # the console saw it too

"""The HTML report in headless Chromium: it renders offline, every figure is laid out with its text, no console errors.

The screenshot is kept as a test artifact: in ``tmp_path`` and, when ``AUTOEVOL_ARTIFACTS`` is set,
copied into that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html import unescape
from pathlib import Path

import pytest

from autoevol.report import write_report
from tests.metrics.test_quality import HashingEmbedder
from tests.report.test_report import figures, make_run
from tests.test_export import make_output

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")

CONSOLE_MARK = "autoevol-probe: console capture works"
PROBE = f"""<script>
console.error({CONSOLE_MARK!r});
window.addEventListener("load", () => {{
  const inside = (inner, outer) => inner.left >= outer.left - 1 && inner.right <= outer.right + 1
    && inner.top >= outer.top - 1 && inner.bottom <= outer.bottom + 1;
  const figures = Array.from(document.querySelectorAll("svg"), svg => {{
    const box = svg.getBoundingClientRect();
    const texts = Array.from(svg.querySelectorAll("text"));
    return {{label: svg.getAttribute("aria-label"), width: box.width, height: box.height,
             ratio: svg.viewBox.baseVal.height / svg.viewBox.baseVal.width,
             page: document.body.clientWidth, marks: svg.querySelectorAll("rect, circle").length,
             texts: texts.length, drawn: texts.filter(t => t.getComputedTextLength() > 0).length,
             inside: texts.filter(t => inside(t.getBoundingClientRect(), box)).length}};
  }});
  const out = document.createElement("pre");
  out.id = "autoevol-probe";
  out.textContent = JSON.stringify(figures);
  document.body.appendChild(out);
}});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def png_pixels(data: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and the distinct pixels of a sample of rows of an 8-bit RGB(A) PNG."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = header[0], header[1], header[2], header[3]
    assert depth == 8 and colour in (2, 6), header
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    seen: set[bytes] = set()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):  # undo the PNG filter
            left = row[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 255
            elif kind == 2:
                row[i] = (row[i] + up) & 255
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        previous = row
        if y % 16 == 0:
            seen.update(bytes(row[x:x + channels]) for x in range(0, stride, channels * 4))
    return width, height, seen


def keep_artifact(path: Path) -> None:
    folder = os.environ.get("AUTOEVOL_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


@pytest.mark.parametrize("kind", ["run", "output"])
def test_report_renders_in_chromium_with_every_figure(tmp_path: Path, kind: str) -> None:
    source = make_run(tmp_path / "run") if kind == "run" else make_output(tmp_path / "out.jsonl")
    report = write_report(source, tmp_path / f"report-{kind}.html", embedder=HashingEmbedder())
    html = report.read_text()
    labels = list(figures(html))
    assert len(labels) >= 3

    # The report plus a probe script: once the page has loaded, the page's own JavaScript records each
    # figure's laid-out size and how many of its texts were drawn inside it into the DOM, and logs one
    # console error of its own, so that an empty list of console messages proves the capture works
    # rather than that nothing was captured.
    assert html.count("</body>") == 1
    probe = tmp_path / f"report-{kind}-probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                   probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="autoevol-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the probe script did not run"
    laid_out = json.loads(unescape(found.group(1)))
    assert [figure["label"] for figure in laid_out] == labels
    for figure in laid_out:
        assert 100 < figure["width"] <= figure["page"] and figure["height"] > 50, figure
        assert figure["height"] / figure["width"] == pytest.approx(figure["ratio"], rel=0.02), figure  # not distorted
        assert figure["marks"] > 0 and figure["texts"] > 3, figure
        assert figure["drawn"] == figure["inside"] == figure["texts"], figure  # no label cut off at an edge
    assert "Final method" in dom.stdout if kind == "run" else "Length distributions" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert len(console) == 1 and CONSOLE_MARK in console[0], console  # the probe's own error, nothing else
    assert "ERR_" not in dom.stderr  # no resource failed to load

    screenshot = tmp_path / f"report-{kind}.png"
    shot = chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400", report.as_uri())
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    keep_artifact(screenshot)
    width, height, colours = png_pixels(screenshot.read_bytes())
    assert (width, height) == (1280, 2400)
    assert len(colours) > 20  # text and plots, not a blank page

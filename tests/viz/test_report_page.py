"""The run report page, rendered from a synthetic ``xai/`` tree written file by file."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from lightning_xai.viz.report import _main, render_report, sparkline_svg, write_report

EVIL = '<script>alert("x")</script>&'
ODD = 'odd <i>&"q" name'  # a folder name needing HTML and URL escaping
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class _Page(HTMLParser):
    """Collects what a browser would act on: tags, links, image sources, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.polylines: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "img":
            self.srcs.append(str(a["src"]))
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "polyline":
            self.polylines.append(str(a["points"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _png(path: Path, value: int, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), value, dtype=np.uint8)).save(path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _csv(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def xai(tmp_path: Path) -> Path:
    """Two callback folders as the callbacks leave them, with hostile names and values."""
    root = tmp_path / "run" / "version_0" / "xai"
    attr = root / "attribution_logger"
    # Step order disagrees with mtime order: the step in the name decides.
    _png(attr / "fit" / "epoch0000_step0000004.png", 10, mtime=3000)
    _png(attr / "fit" / "epoch0002_step0000012.png", 30, mtime=1000)
    _png(attr / "fit" / "epoch0001_step0000008.png", 20, mtime=2000)
    _png(attr / "test" / "epoch0002_step0000012.png", 40)
    # Numbers only in a folder name: still one item, the newest epoch wins.
    _png(attr / "fit" / "epoch0001" / "grid.png", 50)
    _png(attr / "fit" / "epoch0003" / "grid.png", 60)
    _csv(
        attr / "scalars.csv",
        [
            {"step": 4, "tag": "fit/attribution_logger/completeness_gap", "value": 0.5},
            {"step": 8, "tag": "fit/attribution_logger/completeness_gap", "value": 0.1},
            {"step": 12, "tag": "fit/attribution_logger/completeness_gap", "value": 0.25},
            {"step": 12, "tag": f"test/{EVIL}", "value": 2.0},
            {"step": 12, "tag": "fit/attribution_logger/broken", "value": "not a number"},
            {"step": 12, "tag": "fit/attribution_logger/nan", "value": float("nan")},
        ],
    )
    (attr / "fit" / ".epoch0009_step0000099.png.a1b2.tmp").write_bytes(b"half a file")

    infl = root / "influence_logger"
    _png(infl / "fit" / "most_self_influential" / "step000004.png", 70)
    _png(infl / "fit" / "most_self_influential" / "step000012.png", 80)
    _csv(infl / "fit" / "ranking_step000004.csv", [{"rank": 0, "index": 1, "self": 0.0}])
    _csv(
        infl / "fit" / "ranking_step000012.csv",
        [
            {"rank": r, "index": 100 + r, "self_influence": 25.0 - r + (r == 0) / 7}
            for r in range(24)
        ]
        + [{"rank": 24, "index": EVIL, "self_influence": 0.5}],
    )
    (infl / "fit" / "rules").mkdir(parents=True)
    (infl / "fit" / "rules" / "step000012.md").write_text(
        "| class | rule |\n|---|---|\n| y1 | c0 ∧ ¬c1 |\n| y<2> | a \\| b |\n"
    )
    (infl / "fit" / "influence_step000012.pt").write_bytes(b"\0" * 10)
    weird = root / ODD
    _png(weird / "validate" / "pic #1?.png", 90)
    (root / "notes.txt").write_text("top-level file")
    (root / "report.html").write_text("an older report, not linked")
    return root


def test_sections_header_and_markdown_twin(xai: Path) -> None:
    page, md = render_report(xai, title="run <v0>", now=NOW)
    doc = _parse(page)
    assert "<h1>run &lt;v0&gt;</h1>" in page and "<title>run &lt;v0&gt;</title>" in page
    assert str(xai.parent.resolve()) in page and "2026-01-02 03:04:05" in page
    assert "<dt>stages seen</dt><dd>fit, validate, test</dd>" in page
    assert doc.ids == [
        "cb-attribution_logger",
        "cb-influence_logger",
        "cb-odd-i-q-name",
    ]
    assert [h for h in doc.hrefs if h.startswith("#")] == [f"#{i}" for i in doc.ids]
    # One section per callback folder, in name order, each with its own subsections.
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[:2] == ["attribution_logger", "influence_logger"]
    assert headings[-1] == "Other files"
    assert "Latest pictures" in page and "Tables" in page and "Scalars" in page
    # The Markdown twin holds the same summary without pictures.
    assert md.startswith("# run &lt;v0&gt;\n")
    assert "<img" not in md and "<svg" not in md
    assert "## attribution_logger" in md and "## influence_logger" in md
    assert "- stages seen: fit, validate, test" in md
    assert "| y1 | c0 ∧ ¬c1 |" in md  # a callback's Markdown table is kept verbatim


def test_latest_picture_per_item_with_caption(xai: Path) -> None:
    page, md = render_report(xai, title="t", now=NOW)
    srcs = [unquote(s) for s in _parse(page).srcs]
    assert srcs == [
        "attribution_logger/fit/epoch0002_step0000012.png",  # not the newest mtime
        "attribution_logger/fit/epoch0003/grid.png",
        "attribution_logger/test/epoch0002_step0000012.png",
        "influence_logger/fit/most_self_influential/step000012.png",
        f"{ODD}/validate/pic #1?.png",
    ]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions[:4] == [
        "fit · epoch 2 · step 12",
        "fit · grid · epoch 3",
        "test · epoch 2 · step 12",
        "fit · most_self_influential · step 12",
    ]
    assert "- fit · most_self_influential · step 12: `influence_logger/fit/most" in md


def test_only_step_and_epoch_numbers_make_versions(tmp_path: Path) -> None:
    cb = tmp_path / "xai" / "per_class"
    for k in (0, 1):
        _png(cb / "fit" / f"class{k}_step{3:06d}.png", 10 * k)
        _png(cb / "fit" / f"class{k}_step{12:06d}.png", 10 * k + 1)
    _png(cb / "fit" / "grid" / "3.png", 5, mtime=2000)  # bare numbers: compared as numbers
    _png(cb / "fit" / "grid" / "12.png", 6, mtime=1000)
    page, _ = render_report(tmp_path / "xai", title="t", now=NOW)
    assert [unquote(s) for s in _parse(page).srcs] == [
        "per_class/fit/class0_step000012.png",
        "per_class/fit/class1_step000012.png",
        "per_class/fit/grid/12.png",
    ]


def test_every_link_is_relative_and_points_at_a_file(xai: Path) -> None:
    page, _ = render_report(xai, title="t", now=NOW)
    doc = _parse(page)
    files = {
        p.relative_to(xai).as_posix()
        for p in xai.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "report.html"
    }
    targets = set()
    for link in doc.hrefs + doc.srcs:
        if link.startswith("#"):
            continue
        parsed = urlparse(link)
        assert not parsed.scheme and not parsed.netloc and not link.startswith("/"), link
        assert not parsed.query and not parsed.fragment, link  # '?' and '#' in names encoded
        target = xai / unquote(link)
        assert target.is_file(), link
        targets.add(target.relative_to(xai).as_posix())
    assert targets == files  # every file linked; temporaries and the old report are not
    assert not any(".tmp" in t for t in targets)


def test_everything_is_escaped(xai: Path) -> None:
    page, md = render_report(xai, title=EVIL, max_rows=30, now=NOW)
    doc = _parse(page)
    assert doc.tags.count("script") == 1  # only the page's own image counter
    assert page.count("<script>") == 1
    assert "alert(&quot;x&quot;)" in page  # hostile text shown as text
    assert "javascript:" not in page
    text = "".join(doc.text)
    assert EVIL in text  # a browser shows the original characters
    # Markdown: plain text is escaped, tags and paths are literal inside code spans.
    assert "# &lt;script&gt;alert" in md
    assert "`test/<script>" in md
    assert "<script>" not in re.sub(r"`[^`]*`", "", md)
    assert "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;</td>" in page  # CSV cell
    assert "| 24 | &lt;script&gt;alert" in md
    # A table pipe inside a cell does not break the row.
    assert "<td>a | b</td>" in page and "<td>y&lt;2&gt;</td>" in page


def test_tables_show_the_newest_csv_top_rows(xai: Path) -> None:
    page, md = render_report(xai, title="t", max_rows=5, now=NOW)
    assert "ranking_step000004.csv</a></h4>" not in page
    assert "fit · ranking · step 12" in page
    assert "<th>rank</th><th>index</th><th>self_influence</th>" in page
    assert '<td class="num">104</td>' in page and '<td class="num">105</td>' not in page
    assert "top 5 of 25 rows" in page and "top 5 of 25 rows" in md
    assert "| rank | index | self_influence |" in md and "| 4 | 104 | 21.0 |" in md
    # Long floats are shortened for display (the linked file keeps every digit).
    assert "| 0 | 100 | 25.1429 |" in md and '<td class="num">25.1429</td>' in page
    # The Markdown file was rendered as an HTML table with a header row.
    assert "<tr><th>class</th><th>rule</th></tr><tr><td>y1</td><td>c0 ∧ ¬c1</td></tr>" in page


def test_scalars_trend_and_sparkline(xai: Path) -> None:
    page, md = render_report(xai, title="t", now=NOW)
    row = "| `fit/attribution_logger/completeness_gap` | 0.25 (12) | 0.5 | 0.1 | 0.5 | 3 |"
    assert row in md
    assert "broken" not in md and "/nan" not in md  # unreadable and NaN rows are left out
    doc = _parse(page)
    # One sparkline per tag; x follows the step, y the value (top = max, bottom = min).
    assert len(doc.polylines) == 1  # the single-point tag gets a dot, not a line
    points = [tuple(map(float, p.split(","))) for p in doc.polylines[0].split()]
    assert [x for x, _ in points] == [3.0, 60.0, 117.0]
    assert [y for _, y in points] == [3.0, 25.0, pytest.approx(25 - 22 * 0.15 / 0.4, abs=0.06)]
    assert page.count('<svg class="spark"') == 2


def test_sparkline_svg_edges() -> None:
    flat = sparkline_svg([0, 1, 2], [1.0, 1.0, 1.0], width=50, height=10)
    assert 'points="3.0,5.0 25.0,5.0 47.0,5.0"' in flat
    same_step = sparkline_svg([7, 7], [0.0, 1.0], width=50, height=10)
    assert 'points="3.0,7.0 47.0,3.0"' in same_step
    assert "<polyline" not in sparkline_svg([1], [2.0])
    assert "<circle" not in sparkline_svg([], [])
    with pytest.raises(ValueError, match="`steps` and `values` must have the same length"):
        sparkline_svg([0, 1], [1.0])


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "xai").mkdir()
    page, md = render_report(tmp_path / "xai", title="empty", now=NOW)
    assert "No callback folder under xai/ yet." in page and "stages seen</dt><dd>none yet" in page
    assert "No callback folder under xai/ yet." in md
    with pytest.raises(FileNotFoundError, match="`xai_dir` .* is not a directory"):
        render_report(tmp_path / "missing", title="x")


def test_command_line_writes_both_files(xai: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = xai.parent
    (xai / "report.html").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "lightning_xai.viz.report", str(log_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(xai / "report.html"), str(xai / "report.md")]
    assert "version_0" in (xai / "report.html").read_text()
    assert write_report(xai, title="again")[1].read_text().startswith("# again")
    assert _main([str(log_dir / "nope")]) == 1 and _main([]) == 2
    assert "no xai/ folder" in capsys.readouterr().err


def test_long_markdown_is_cut_at_a_line(tmp_path: Path) -> None:
    folder = tmp_path / "xai" / "rules_logger" / "fit" / "rules"
    folder.mkdir(parents=True)
    rows = "".join(f"| y{i} | c{i} |\n" for i in range(3000))
    (folder / "step000001.md").write_text("| class | rule |\n|---|---|\n" + rows)
    page, md = render_report(tmp_path / "xai", title="t", now=NOW)
    assert "(cut short here; the file has more)" in page and "| y0 | c0 |" in md
    assert "| y2999 |" not in md and len(md) < 25_000
    assert re.search(r"<td>y\d+</td><td>c\d+</td></tr></table>", page)  # no half row

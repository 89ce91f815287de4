"""The run report: one offline page summarising everything the callbacks saved under ``xai/``.

:func:`render_report` reads ``<log_dir>/xai/<name>/`` folders (one per callback) and builds an
HTML page and its Markdown twin from the files alone, so it works during a run and on a finished
one. Each callback gets a section with

* the latest picture of every item (newest PNG per folder and file pattern, by the step or epoch
  in the file name, then modification time), captioned with stage, item, epoch and step;
* tables: the newest Markdown tables (``.md``) and the top rows of the newest CSV files
  (``ranking_*.csv`` and the like);
* the scalars of ``scalars.csv`` (``step,tag,value``): last, first, min and max with an inline
  SVG sparkline of the trend;
* relative links to every file of the folder.

The page needs no network and no JavaScript library; images are referenced by relative paths,
so keep ``report.html`` next to the callback folders. A five-line inline script only records in
the DOM how many pictures loaded (``data-images-loaded="n/m"`` on ``<body>``).

Command line (writes ``<log_dir>/xai/report.html`` and ``report.md`` for a finished run)::

    python -m lightning_xai.viz.report <log_dir>
"""

from __future__ import annotations

import csv
import html
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from urllib.parse import quote

__all__ = ["render_report", "sparkline_svg", "write_report"]

STAGE_NAMES: tuple[str, ...] = ("fit", "validate", "test", "predict")
REPORT_FILES: tuple[str, ...] = ("report.html", "report.md")
_SPARK_CHARS = "▁▂▃▄▅▆▇█"
_NUMBER = re.compile(r"\d+")
_STEP = re.compile(r"step[_=-]?(\d+)", re.IGNORECASE)
_EPOCH = re.compile(r"epoch[_=-]?(\d+)", re.IGNORECASE)
_VERSION = re.compile(r"(step|epoch)[_=-]?\d+", re.IGNORECASE)
_ANCHOR_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_MD_SEPARATOR = re.compile(r"^\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_MAX_MD_CHARS = 20_000

_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
</script>"""

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.lead { color: #555; margin-top: 0; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
.pictures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; min-width: 160px; image-rendering: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f5f5f5; padding: 0 0.2em; }
.note { color: #666; font-size: 0.85em; }
svg.spark polyline { fill: none; stroke: #1f77b4; stroke-width: 1.5; }
svg.spark circle { fill: #d62728; }
</style>"""


# ----------------------------------------------------------------------------- data model
@dataclass
class _Item:
    """A file chosen to show: its path relative to ``xai/`` and its caption."""

    path: Path
    caption: str


@dataclass
class _Table:
    item: _Item
    header: list[str]
    rows: list[list[str]]
    total: int
    markdown: str | None = None  # the raw text of a Markdown file


@dataclass
class _Series:
    tag: str
    steps: list[int]
    values: list[float]


@dataclass
class _Section:
    name: str
    pictures: list[_Item] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    series: list[_Series] = field(default_factory=list)
    files: list[tuple[Path, int]] = field(default_factory=list)  # (path under xai/, bytes)
    stages: set[str] = field(default_factory=set)
    hidden_tags: int = 0


# ------------------------------------------------------------------------------ scanning
def _files_of(folder: Path) -> list[Path]:
    """Every regular, non-hidden file under ``folder`` (temporaries of atomic writes are
    hidden), sorted."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            out.append(path)
    return sorted(out)


def _pattern(rel: Path) -> str:
    """Files of one item share their path up to the step and epoch numbers in it:
    ``fit/step000004.png`` and ``fit/step000008.png`` (or ``epoch0001/rules.md`` and
    ``epoch0002/rules.md``) are two versions of one item, while ``class0.png`` and
    ``class1.png`` are two items."""
    parts = [_VERSION.sub(r"\1#", p) for p in rel.with_suffix("").parts]
    parts = ["#" if p.isdigit() else p for p in parts]
    return "/".join(parts).lower() + rel.suffix.lower()


def _newness(path: Path, rel: Path) -> tuple[int, int, tuple[int, ...], int, str]:
    text = rel.as_posix()
    step = _STEP.findall(text)
    epoch = _EPOCH.findall(text)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return (
        int(step[-1]) if step else -1,
        int(epoch[-1]) if epoch else -1,
        tuple(int(n) for n in _NUMBER.findall(text)),
        mtime,
        text,
    )


def _latest(paths: Iterable[Path], root: Path) -> list[Path]:
    """The newest file of each item (by step, then epoch, then the other numbers of its path,
    then modification time), in path order."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(_pattern(path.relative_to(root)), []).append(path)
    return sorted(
        max(group, key=lambda p: _newness(p, p.relative_to(root))) for group in groups.values()
    )


def _caption(rel: Path) -> str:
    """``fit · most_self_influential · epoch 3 · step 120`` from a path relative to the
    callback folder (stage, item, epoch and step, read from folders and file name)."""
    parts = [*rel.parent.parts, rel.stem]
    stage = parts.pop(0) if len(parts) > 1 and parts[0] in STAGE_NAMES else None
    text = "/".join(parts)
    step = _STEP.findall(text)
    epoch = _EPOCH.findall(text)
    labels = [_EPOCH.sub("", _STEP.sub("", p)).strip("_- .") for p in parts]
    pieces = [stage] if stage else []
    pieces += [label for label in labels if label]
    if epoch:
        pieces.append(f"epoch {int(epoch[-1])}")
    if step:
        pieces.append(f"step {int(step[-1])}")
    return " · ".join(pieces) or rel.stem


def _read_csv(path: Path, max_rows: int) -> tuple[list[str], list[list[str]], int]:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = list(islice(reader, max_rows))
        total = len(rows) + sum(1 for _ in reader)
    return header, rows, total


def _read_scalars(path: Path) -> list[_Series]:
    by_tag: dict[str, dict[int, float]] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        for row in csv.DictReader(f):
            try:
                step, tag, value = int(float(row["step"])), str(row["tag"]), float(row["value"])
            except (KeyError, TypeError, ValueError):
                continue  # a malformed row is shown in the file itself, not in the trend
            if math.isfinite(value):
                by_tag.setdefault(tag, {})[step] = value  # a later row for a step wins
    series = []
    for tag in sorted(by_tag):
        points = sorted(by_tag[tag].items())
        series.append(_Series(tag, [s for s, _ in points], [v for _, v in points]))
    return series


def _scan(folder: Path, xai_dir: Path, max_rows: int, max_tags: int) -> _Section:
    section = _Section(folder.name)
    files = _files_of(folder)
    for path in files:
        rel = path.relative_to(folder)
        try:
            size = path.stat().st_size
        except OSError:
            continue
        section.files.append((path.relative_to(xai_dir), size))
        if len(rel.parts) > 1 and rel.parts[0] in STAGE_NAMES:
            section.stages.add(rel.parts[0])
    pngs = [p for p in files if p.suffix.lower() == ".png"]
    section.pictures = [
        _Item(p.relative_to(xai_dir), _caption(p.relative_to(folder)))
        for p in _latest(pngs, folder)
    ]
    mds = [p for p in files if p.suffix.lower() == ".md"]
    for path in _latest(mds, folder):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        item = _Item(path.relative_to(xai_dir), _caption(path.relative_to(folder)))
        if len(text) > _MAX_MD_CHARS:
            text = (
                text[:_MAX_MD_CHARS].rsplit("\n", 1)[0] + "\n\n(cut short here; the file has more)"
            )
        section.tables.append(_Table(item, [], [], 0, markdown=text))
    csvs = [
        p
        for p in files
        if p.suffix.lower() == ".csv" and p.relative_to(folder).as_posix() != "scalars.csv"
    ]
    for path in _latest(csvs, folder):
        try:
            header, rows, total = _read_csv(path, max_rows)
        except (OSError, csv.Error):
            continue
        item = _Item(path.relative_to(xai_dir), _caption(path.relative_to(folder)))
        section.tables.append(_Table(item, header, rows, total))
    scalars = folder / "scalars.csv"
    if scalars.is_file():
        try:
            series = _read_scalars(scalars)
        except (OSError, csv.Error):
            series = []
        section.series = series[:max_tags]
        section.hidden_tags = max(0, len(series) - max_tags)
        for s in series:
            head = s.tag.split("/", 1)[0]
            if head in STAGE_NAMES:
                section.stages.add(head)
    return section


# ------------------------------------------------------------------------------ helpers
def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def _url(rel: Path) -> str:
    """A relative URL for a path under ``xai/``, percent-encoded and HTML-escaped."""
    return html.escape(quote(rel.as_posix()), quote=True)


def _anchor(name: str) -> str:
    return "cb-" + (_ANCHOR_UNSAFE.sub("-", name).strip("-") or "x")


def _md_text(text: str) -> str:
    """Plain text for Markdown (HTML-like characters and table pipes escaped)."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def _spark_text(values: Sequence[float], width: int = 24) -> str:
    """A unicode sparkline (``▁▃█``) of at most ``width`` characters."""
    if not values:
        return ""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(values), max(values)
    if hi == lo:
        return _SPARK_CHARS[3] * len(values)
    top = len(_SPARK_CHARS) - 1
    return "".join(_SPARK_CHARS[round((v - lo) / (hi - lo) * top)] for v in values)


def sparkline_svg(
    steps: Sequence[float], values: Sequence[float], *, width: int = 120, height: int = 28
) -> str:
    """An inline SVG line of ``values`` against ``steps`` (no script, no external style).

    The last point is marked with a dot; a constant series is a flat line in the middle.

    Args:
        steps: x positions (e.g. global steps), same length as ``values``.
        values: y values; must be finite.
        width: picture width in pixels.
        height: picture height in pixels.

    Returns:
        The ``<svg>`` element as a string.

    Example:
        >>> svg = sparkline_svg([0, 1, 2], [1.0, 3.0, 2.0])
        >>> svg.startswith("<svg") and "<polyline" in svg
        True
    """
    if len(steps) != len(values):
        raise ValueError(
            f"`steps` and `values` must have the same length, got {len(steps)} and "
            f"{len(values)}; pass one step per value."
        )
    n = len(values)
    pad = 3.0
    label = html.escape(
        f"{n} points from {_fmt(values[0])} to {_fmt(values[-1])}" if n else "no points",
        quote=True,
    )
    head = (
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f"<title>{label}</title>"
    )
    if n == 0:
        return head + "</svg>"
    x0, x1 = min(steps), max(steps)
    xs = (
        [pad + (s - x0) / (x1 - x0) * (width - 2 * pad) for s in steps]
        if x1 > x0
        else [pad + (i / (n - 1) if n > 1 else 0.5) * (width - 2 * pad) for i in range(n)]
    )
    lo, hi = min(values), max(values)
    ys = [
        height / 2 if hi == lo else height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)
        for v in values
    ]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    line = f'<polyline points="{points}"/>' if n > 1 else ""
    return head + line + f'<circle cx="{xs[-1]:.1f}" cy="{ys[-1]:.1f}" r="2"/></svg>'


# --------------------------------------------------------------------- markdown -> HTML
def _inline(text: str) -> str:
    """Escape ``text`` and turn ``code`` and **bold** spans into HTML."""
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _markdown_to_html(text: str) -> str:
    """A small Markdown subset (pipe tables, headings, lists, code fences, paragraphs);
    everything else is escaped text."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
            continue
        if stripped.startswith("|"):
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            block = lines[i:j]
            has_header = len(block) > 1 and _MD_SEPARATOR.match(block[1].strip()) is not None
            rows = [_cells(b) for k, b in enumerate(block) if not (has_header and k == 1)]
            parts = ["<table>"]
            for k, row in enumerate(rows):
                tag = "th" if has_header and k == 0 else "td"
                parts.append(
                    "<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in row) + "</tr>"
                )
            out.append("".join(parts) + "</table>")
            i = j
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            level = min(6, len(heading.group(1)) + 3)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if re.match(r"^[-*+]\s+", stripped):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*+]\s+", lines[i]):
                items.append("<li>" + _inline(re.sub(r"^\s*[-*+]\s+", "", lines[i])) + "</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("|", "```")):
            para.append(_inline(lines[i].strip()))
            i += 1
        out.append("<p>" + "<br>".join(para) + "</p>")
    return "\n".join(out)


# ------------------------------------------------------------------------------ rendering
def _html_section(s: _Section) -> str:
    out = [f'<section id="{_anchor(s.name)}">', f"<h2>{html.escape(s.name)}</h2>"]
    if s.stages:
        out.append('<p class="note">stages: ' + html.escape(", ".join(_ordered(s.stages))) + "</p>")
    if s.pictures:
        out.append("<h3>Latest pictures</h3>")
        out.append('<div class="pictures">')
        for pic in s.pictures:
            url, cap = _url(pic.path), html.escape(pic.caption)
            out.append(
                f'<figure><a href="{url}"><img src="{url}" alt="{cap}"></a>'
                f"<figcaption>{cap}</figcaption></figure>"
            )
        out.append("</div>")
    if s.tables:
        out.append("<h3>Tables</h3>")
        for table in s.tables:
            url, cap = _url(table.item.path), html.escape(table.item.caption)
            out.append(f'<h4><a href="{url}">{cap}</a></h4>')
            if table.markdown is not None:
                out.append(_markdown_to_html(table.markdown))
                continue
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header))
            for row in table.rows:
                out.append(
                    "<tr>"
                    + "".join(
                        f'<td class="num">{html.escape(_cell(c))}</td>'
                        if _is_number(c)
                        else f"<td>{html.escape(c)}</td>"
                        for c in row
                    )
                    + "</tr>"
                )
            out.append("</table>")
            out.append(
                f'<p class="note">top {len(table.rows)} of {table.total} rows; '
                f'<a href="{url}">the whole file</a></p>'
            )
    if s.series:
        out.append("<h3>Scalars</h3>")
        out.append(
            "<table><tr><th>tag</th><th>last</th><th>first</th><th>min</th><th>max</th>"
            "<th>points</th><th>trend</th></tr>"
        )
        for ser in s.series:
            v = ser.values
            out.append(
                f"<tr><td><code>{html.escape(ser.tag)}</code></td>"
                f'<td class="num">{_fmt(v[-1])} '
                f'<span class="note">(step {ser.steps[-1]})</span></td>'
                f'<td class="num">{_fmt(v[0])}</td><td class="num">{_fmt(min(v))}</td>'
                f'<td class="num">{_fmt(max(v))}</td><td class="num">{len(v)}</td>'
                f"<td>{sparkline_svg(ser.steps, v)}</td></tr>"
            )
        out.append("</table>")
        if s.hidden_tags:
            out.append(f'<p class="note">{s.hidden_tags} more tags in scalars.csv</p>')
    out.append(f"<h3>Files ({len(s.files)})</h3>")
    out.append(f"<details><summary>every file of <code>{html.escape(s.name)}/</code></summary><ul>")
    for rel, size in s.files:
        out.append(
            f'<li><a href="{_url(rel)}">{html.escape(rel.as_posix())}</a> '
            f'<span class="note">{_size(size)}</span></li>'
        )
    out.append("</ul></details></section>")
    return "\n".join(out)


def _md_section(s: _Section, max_files: int) -> str:
    out = [f"## {_md_text(s.name)}", ""]
    if s.stages:
        out += [f"stages: {', '.join(_ordered(s.stages))}", ""]
    if s.pictures:
        out += ["### Latest pictures", ""]
        out += [f"- {_md_text(p.caption)}: {_md_code(p.path.as_posix())}" for p in s.pictures]
        out.append("")
    if s.tables:
        out += ["### Tables", ""]
        for table in s.tables:
            out += [
                f"#### {_md_text(table.item.caption)} ({_md_code(table.item.path.as_posix())})",
                "",
            ]
            if table.markdown is not None:
                out += [table.markdown.strip(), ""]
                continue
            if table.header:
                out.append("| " + " | ".join(_md_text(h) for h in table.header) + " |")
                out.append("|" + "---|" * len(table.header))
                out += [
                    "| " + " | ".join(_md_text(_cell(c)) for c in row) + " |" for row in table.rows
                ]
            out += ["", f"top {len(table.rows)} of {table.total} rows", ""]
    if s.series:
        out += ["### Scalars", ""]
        out.append("| tag | last (step) | first | min | max | points | trend |")
        out.append("|---|---|---|---|---|---|---|")
        for ser in s.series:
            v = ser.values
            out.append(
                f"| {_md_code(ser.tag)} | {_fmt(v[-1])} ({ser.steps[-1]}) | {_fmt(v[0])} | "
                f"{_fmt(min(v))} | {_fmt(max(v))} | {len(v)} | {_spark_text(v)} |"
            )
        if s.hidden_tags:
            out.append(f"\n{s.hidden_tags} more tags in scalars.csv")
        out.append("")
    out += [f"### Files ({len(s.files)})", ""]
    out += [f"- {_md_code(rel.as_posix())} ({_size(size)})" for rel, size in s.files[:max_files]]
    if len(s.files) > max_files:
        out.append(f"- … and {len(s.files) - max_files} more (see report.html)")
    out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    """A CSV cell for display: long floats shortened to 6 significant digits (the file keeps
    them all)."""
    if len(text) > 8 and _is_number(text) and not text.lstrip("+-").isdigit():
        return f"{float(text):.6g}"
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _ordered(stages: Iterable[str]) -> list[str]:
    return sorted(stages, key=lambda s: (STAGE_NAMES.index(s) if s in STAGE_NAMES else 99, s))


def render_report(
    xai_dir: str | Path,
    *,
    title: str,
    max_rows: int = 10,
    max_tags: int = 40,
    max_files_markdown: int = 50,
    now: datetime | None = None,
) -> tuple[str, str]:
    """Build the run report of ``xai_dir`` (``<log_dir>/xai``) from the files on disk.

    One section per callback folder ``xai_dir/<name>/``: latest pictures with captions, tables
    (Markdown files and the top rows of CSV files), the trend of every tag of ``scalars.csv``
    (last, first, min, max, sparkline) and relative links to every file. The HTML page belongs
    in ``xai_dir`` (its links are relative to it); the Markdown twin holds the same summary
    without pictures.

    Args:
        xai_dir: the ``xai`` folder of a run.
        title: the page title (e.g. the run's name).
        max_rows: rows shown from each CSV table.
        max_tags: scalar tags shown per callback (the rest are counted).
        max_files_markdown: files listed per callback in the Markdown (the HTML lists all).
        now: the time written in the header (default: the current UTC time).

    Returns:
        ``(html, markdown)``.

    Example:
        >>> import tempfile, pathlib
        >>> xai = pathlib.Path(tempfile.mkdtemp()) / "xai"
        >>> (xai / "demo").mkdir(parents=True)
        >>> rows = "step,tag,value\\n0,fit/demo/a,1\\n5,fit/demo/a,3\\n"
        >>> _ = (xai / "demo" / "scalars.csv").write_text(rows)
        >>> page, md = render_report(xai, title="my <run>")
        >>> "my &lt;run&gt;" in page, "<svg" in page, "| `fit/demo/a` | 3 (5) | 1 |" in md
        (True, True, True)
    """
    xai_dir = Path(xai_dir)
    if not xai_dir.is_dir():
        raise FileNotFoundError(
            f"`xai_dir` {str(xai_dir)!r} is not a directory; pass the run's `<log_dir>/xai` "
            "folder that lightning-xai callbacks write to."
        )
    moment = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    sections = [
        _scan(folder, xai_dir, max_rows, max_tags)
        for folder in sorted(xai_dir.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    ]
    others = [
        (p.relative_to(xai_dir), p.stat().st_size)
        for p in sorted(xai_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name not in REPORT_FILES
    ]
    stages = _ordered(set().union(*(s.stages for s in sections)) if sections else set())
    log_dir = str(xai_dir.resolve().parent)
    lead = (
        "Everything the lightning-xai callbacks saved for this run under xai/: the latest "
        "pictures, tables, scalar trends and links to every file (built from the files, offline)."
    )
    stage_text = ", ".join(stages) or "none yet"

    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{html.escape(lead)}</p>',
        '<dl class="meta">',
        f"<dt>log dir</dt><dd><code>{html.escape(log_dir)}</code></dd>",
        f"<dt>written</dt><dd>{html.escape(moment)}</dd>",
        f"<dt>stages seen</dt><dd>{html.escape(stage_text)}</dd>",
        f"<dt>callbacks</dt><dd>{len(sections)}</dd>",
        "</dl>",
    ]
    if sections:
        page.append(
            "<nav><ul>"
            + "".join(
                f'<li><a href="#{_anchor(s.name)}">{html.escape(s.name)}</a></li>' for s in sections
            )
            + "</ul></nav>"
        )
    else:
        page.append("<p>No callback folder under xai/ yet.</p>")
    page += [_html_section(s) for s in sections]
    if others:
        page.append("<section><h2>Other files</h2><ul>")
        page += [
            f'<li><a href="{_url(rel)}">{html.escape(rel.as_posix())}</a> '
            f'<span class="note">{_size(size)}</span></li>'
            for rel, size in others
        ]
        page.append("</ul></section>")
    page += [_SCRIPT, "</body></html>", ""]

    md = [
        f"# {_md_text(title)}",
        "",
        _md_text(lead),
        "",
        f"- log dir: {_md_code(log_dir)}",
        f"- written: {moment}",
        f"- stages seen: {stage_text}",
        f"- callbacks: {len(sections)}",
        "",
    ]
    if not sections:
        md += ["No callback folder under xai/ yet.", ""]
    md += [_md_section(s, max_files_markdown) for s in sections]
    if others:
        md += ["## Other files", ""]
        md += [f"- {_md_code(rel.as_posix())} ({_size(size)})" for rel, size in others]
        md.append("")
    return "\n".join(page), "\n".join(md)


def write_report(xai_dir: str | Path, *, title: str | None = None) -> tuple[Path, Path]:
    """Render the report of ``xai_dir`` and write ``report.html`` and ``report.md`` into it
    atomically; returns both paths.

    Example:
        >>> import tempfile, pathlib
        >>> xai = pathlib.Path(tempfile.mkdtemp()) / "xai"
        >>> xai.mkdir()
        >>> [p.name for p in write_report(xai, title="empty run")]
        ['report.html', 'report.md']
    """
    from lightning_xai.utilities.io import atomic_write

    xai_dir = Path(xai_dir)
    page, md = render_report(
        xai_dir, title=title or f"lightning-xai report: {xai_dir.resolve().parent.name}"
    )
    return atomic_write(xai_dir / "report.html", page), atomic_write(xai_dir / "report.md", md)


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m lightning_xai.viz.report <log_dir>", file=sys.stderr)
        return 2
    root = Path(argv[0])
    xai_dir = root if root.name == "xai" else root / "xai"
    if not xai_dir.is_dir():
        print(f"no xai/ folder under {root}; pass a run's log dir.", file=sys.stderr)
        return 1
    html_path, md_path = write_report(xai_dir)
    print(html_path)
    print(md_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

"""A picture of the Grafana dashboard (dashboards/tead.json) from a real Prometheus, without
Grafana: each panel's queries go through Prometheus' HTTP API (`query_range` over the last
minutes), the panels are drawn where their `gridPos` puts them, as one HTML page with plain
SVG charts (time series as lines, stats as values, state timelines as coloured bands,
titles and units from the JSON), and headless Chromium takes a PNG of the page.

    python tools/dashboard_snapshot.py --prometheus http://127.0.0.1:9090 --out dash.png \
        [--minutes 15] [--rate-interval 1m] [--var job=tead] [--html dash.html]

It is tead's rendering of the dashboard, not Grafana's: enough to see what each panel
shows on real data (tests/test_dashboard.py runs it against its Prometheus).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Error as BrowserError
from playwright.sync_api import sync_playwright

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "tead.json"
#: Grafana's grid: 24 columns, rows of 30 px (and 8 px between panels)
COLUMNS, ROW_PX, GAP_PX = 24, 30, 8
PALETTE = (
    "#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2",
    "#b877d9", "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17",
)  # fmt: skip
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass(frozen=True)
class Window:
    """The time range drawn, and the step between points (unix seconds)."""

    start: float
    end: float
    step: float


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]  # (unix time, value); NaN and Inf left out

    @property
    def last(self) -> float:
        return self.points[-1][1]


@dataclass
class Panel:
    """One panel of the dashboard with what its queries returned."""

    title: str
    kind: str  # Grafana's panel type: row, stat, timeseries, state-timeline
    grid: dict[str, int]
    unit: str
    spec: dict[str, Any]
    series: list[Series] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(s.points for s in self.series)


# --- queries ---------------------------------------------------------------------------


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included, in the dashboard's order."""
    return [inner for p in dashboard["panels"] for inner in [p, *p.get("panels", [])]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's `$name` and `${name}` variables filled in, longest names first."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    if "$" in expr:
        raise ValueError(f"a Grafana variable without a value in: {expr}")
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    """`{{label}}` filled in from the series' labels (Grafana's legendFormat)."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), fmt)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}" if inner else labels.get("__name__", "value")


def query_range(client: httpx.Client, expr: str, window: Window) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {
        "query": expr,
        "start": window.start,
        "end": window.end,
        "step": window.step,
    }
    response = client.get("/api/v1/query_range", params=params)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error', response.text)}")
    return list(body["data"]["result"])


def fetch(
    dashboard: dict[str, Any],
    prometheus: str,
    window: Window,
    variables: dict[str, str],
) -> list[Panel]:
    """Each panel with the series its targets return over the window."""
    panels = []
    with httpx.Client(base_url=prometheus, timeout=60) as client:
        for spec in panels_of(dashboard):
            unit = spec.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            panel = Panel(spec["title"], spec["type"], spec["gridPos"], unit, spec)
            for target in spec.get("targets", []):
                expr = substitute(target["expr"], variables)
                for result in query_range(client, expr, window):
                    points = [(float(t), float(v)) for t, v in result["values"]]
                    panel.series.append(
                        Series(
                            legend(target.get("legendFormat", ""), result["metric"]),
                            [(t, v) for t, v in points if math.isfinite(v)],
                        )
                    )
            panels.append(panel)
    return panels


# --- numbers, as Grafana shows them ----------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        for size, name in ((86400, "day"), (3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms")):
            if abs(value) >= size:
                return f"{value / size:.3g} {name}"
        return "0 s" if value == 0 else f"{value * 1e6:.3g} µs"
    if unit == "bytes":
        for size, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return f"{value / size:.3g} {name}"
        return f"{value:.0f} B"
    suffix = " ops/s" if unit == "ops" else ""
    for size, name in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{name}{suffix}"
    return f"{value:.3g}{suffix}"


def clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


#: Grafana's named colours the dashboard uses
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a"}


def threshold_color(spec: dict[str, Any], value: float) -> str:
    steps = spec.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    color = "#ccccdc"
    for step in steps or []:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return NAMED.get(color, color)


def value_mapping(spec: dict[str, Any], value: float) -> tuple[str, str] | None:
    """(text, colour) of the value mapping that matches `value`, if one does."""
    for mapping in spec.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        found = mapping.get("options", {}).get(f"{value:g}")
        if mapping.get("type") == "value" and found:
            color = found.get("color", "#ccccdc")
            return found.get("text", f"{value:g}"), NAMED.get(color, color)
    return None


# --- drawing ---------------------------------------------------------------------------------


def draw_stat(panel: Panel, width: float, height: float) -> str:
    shown = [s for s in panel.series if s.points]
    if not shown:
        return '<div class="nodata">No data</div>'
    options = panel.spec.get("options", {})
    items = []
    for series in shown:
        if options.get("textMode") == "name":
            text, color = series.name, "#ccccdc"
        elif options.get("colorMode") == "none":
            text, color = fmt(series.last, panel.unit), "#ccccdc"
        else:
            text, color = fmt(series.last, panel.unit), threshold_color(panel.spec, series.last)
        items.append((text, color))
    chars = sum(len(text) + 2 for text, _ in items)
    size = max(12.0, min(44.0, height * 0.45, width * 1.6 / chars))
    spans = "".join(f'<span style="color:{c}">{html.escape(t)}</span>' for t, c in items)
    return f'<div class="stat" style="font-size:{size:.0f}px">{spans}</div>'


def pieces(points: list[tuple[float, float]], step: float) -> list[list[tuple[float, float]]]:
    """The points cut where some are missing (no sample, NaN): a line has gaps, as in
    Grafana, instead of a straight line across a restart."""
    cut: list[list[tuple[float, float]]] = []
    for point in points:
        if not cut or point[0] - cut[-1][-1][0] > step * 1.5:
            cut.append([])
        cut[-1].append(point)
    return cut


def draw_timeseries(panel: Panel, width: float, height: float, window: Window) -> str:
    start, end = window.start, window.end
    shown = [s for s in panel.series if s.points]
    if not shown:
        return '<div class="nodata">No data</div>'
    legend_rows = min(3, math.ceil(len(shown) / 3))
    plot_h = height - 22 - 16 * legend_rows
    left, right, top = 64.0, width - 10, 6.0
    values = [v for s in shown for _, v in s.points]
    low, high = min(0.0, *values), max(values)
    if high <= low:
        high = low + 1
    scale_x = (right - left) / max(end - start, 1e-9)
    scale_y = (plot_h - top) / (high - low)

    def xy(t: float, v: float) -> str:
        return f"{left + (t - start) * scale_x:.1f},{plot_h - (v - low) * scale_y:.1f}"

    parts = [f'<svg width="{width:.0f}" height="{plot_h + 18:.0f}">']
    for i in range(5):
        v = low + (high - low) * i / 4
        y = plot_h - (v - low) * scale_y
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">')
        parts.append(f"{html.escape(fmt(v, panel.unit))}</text>")
    for i in range(4):
        t = start + (end - start) * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        parts.append(
            f'<text x="{left + (t - start) * scale_x:.1f}" y="{plot_h + 14:.1f}" class="axis" '
            f'text-anchor="{anchor}">{clock(t)}</text>'
        )
    for n, series in enumerate(shown):
        color = PALETTE[n % len(PALETTE)]
        for piece in pieces(series.points, window.step):
            if len(piece) == 1:  # a lone point: a dot
                cx, cy = xy(*piece[0]).split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
                continue
            line = " ".join(xy(t, v) for t, v in piece)
            parts.append(f'<polyline points="{line}" stroke="{color}" class="line"/>')
    parts.append("</svg>")
    names = "".join(
        f'<span><i style="background:{PALETTE[n % len(PALETTE)]}"></i>{html.escape(s.name)}</span>'
        for n, s in enumerate(shown)
    )
    parts.append(f'<div class="legend">{names}</div>')
    return "".join(parts)


def draw_state_timeline(panel: Panel, width: float, height: float, window: Window) -> str:
    start, end, step = window.start, window.end, window.step
    shown = [s for s in panel.series if s.points]
    if not shown:
        return '<div class="nodata">No data</div>'
    label_w, right = min(220.0, width * 0.35), width - 10
    band = min(28.0, (height - 24) / len(shown))
    scale_x = (right - label_w) / max(end - start, 1e-9)
    parts = [f'<svg width="{width:.0f}" height="{band * len(shown) + 18:.0f}">']
    for row, series in enumerate(shown):
        y = row * band
        parts.append(
            f'<text x="{label_w - 8}" y="{y + band * 0.62:.1f}" class="axis" text-anchor="end">'
            f"{html.escape(series.name)}</text>"
        )
        for t, v in series.points:
            text, color = value_mapping(panel.spec, v) or (f"{v:g}", PALETTE[row % len(PALETTE)])
            x = label_w + (t - start) * scale_x
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2:.1f}" width="{step * scale_x + 0.6:.1f}" '
                f'height="{band - 4:.1f}" fill="{color}"><title>{html.escape(text)}</title></rect>'
            )
    for i in range(4):
        t = start + (end - start) * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        parts.append(
            f'<text x="{label_w + (t - start) * scale_x:.1f}" y="{band * len(shown) + 14:.1f}" '
            f'class="axis" text-anchor="{anchor}">{clock(t)}</text>'
        )
    parts.append("</svg>")
    keys = {value_mapping(panel.spec, v) for s in shown for _, v in s.points}
    names = "".join(
        f'<span><i style="background:{key[1]}"></i>{html.escape(key[0])}</span>'
        for key in sorted(k for k in keys if k is not None)
    )
    return "".join(parts) + f'<div class="legend">{names}</div>'


STYLE = """
body { margin: 0; background: #111217; color: #ccccdc; font: 12px Inter, Helvetica, Arial,
  sans-serif; }
header { padding: 10px 12px; font-size: 16px; }
header small { color: #8e8e9e; font-size: 12px; margin-left: 12px; }
.board { position: relative; margin: 0 8px; }
.panel { position: absolute; box-sizing: border-box; background: #181b1f;
  border: 1px solid #2c3235; border-radius: 2px; overflow: hidden; }
.panel h2 { font-size: 13px; font-weight: 500; margin: 6px 8px 2px; white-space: nowrap; }
.row { position: absolute; font-size: 15px; font-weight: 500; padding-top: 6px; }
.stat { display: flex; align-items: center; justify-content: center; height: 70%;
  font-weight: 500; gap: 10px; flex-wrap: wrap; }
.nodata { color: #8e8e9e; text-align: center; margin-top: 15%; }
svg { display: block; margin: 0 4px; }
.grid { stroke: #2c3235; stroke-width: 1; }
.axis { fill: #8e8e9e; font-size: 10px; }
.line { fill: none; stroke-width: 1.5; }
.legend { margin: 2px 10px; font-size: 11px; line-height: 15px; overflow: hidden;
  max-height: 48px; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend i { display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }
"""


def render_html(
    dashboard: dict[str, Any], panels: list[Panel], window: Window, width: int = 1600
) -> str:
    """The dashboard as one HTML page, each panel where its gridPos puts it."""
    column = (width - 16) / COLUMNS
    boxes = []
    for panel in panels:
        g = panel.grid
        x, y = g["x"] * column, g["y"] * (ROW_PX + GAP_PX)
        w, h = g["w"] * column - GAP_PX, g["h"] * (ROW_PX + GAP_PX) - GAP_PX
        place = f"left:{x:.0f}px;top:{y:.0f}px;width:{w:.0f}px;height:{h:.0f}px"
        title = html.escape(panel.title)
        if panel.kind == "row":
            boxes.append(f'<div class="row" style="{place}">{title}</div>')
            continue
        inner_h = h - 28
        if panel.kind == "stat":
            body = draw_stat(panel, w, inner_h)
        elif panel.kind == "state-timeline":
            body = draw_state_timeline(panel, w - 8, inner_h, window)
        else:
            body = draw_timeseries(panel, w - 8, inner_h, window)
        boxes.append(f'<div class="panel" style="{place}"><h2>{title}</h2>{body}</div>')
    bottom = max(p.grid["y"] + p.grid["h"] for p in panels) * (ROW_PX + GAP_PX)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{STYLE}</style></head>'
        f"<body><header>{html.escape(dashboard.get('title', 'dashboard'))}"
        f"<small>{clock(window.start)} to {clock(window.end)} UTC · dashboards/tead.json "
        "drawn by tools/dashboard_snapshot.py from Prometheus data</small></header>"
        f'<div class="board" style="height:{bottom}px">{"".join(boxes)}</div></body></html>'
    )


def screenshot(page_html: str, png: Path, width: int = 1600) -> None:
    """A full-page PNG of `page_html` from headless Chromium."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_content(page_html, wait_until="load")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()


def snapshot(
    prometheus: str,
    png: Path,
    *,
    dashboard_path: Path = DASHBOARD,
    minutes: float = 15,
    rate_interval: str = "1m",
    variables: dict[str, str] | None = None,
    html_path: Path | None = None,
    width: int = 1600,
) -> list[Panel]:
    """Query, draw and photograph the dashboard; returns the panels with their series."""
    dashboard = json.loads(dashboard_path.read_text(encoding="utf-8"))
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, round(minutes * 60 / 300, 1))  # about 300 points a series
    values = {
        "job": "tead",
        "instance": ".*",
        "workflow": ".*",
        "__rate_interval": rate_interval,
        "__interval": f"{step:g}s",
        "__range": f"{minutes * 60:.0f}s",
        **(variables or {}),
    }
    window = Window(start, end, step)
    panels = fetch(dashboard, prometheus, window, values)
    page = render_html(dashboard, panels, window, width)
    if html_path is not None:
        html_path.write_text(page, encoding="utf-8")
    screenshot(page, png, width)
    return panels


def variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="its URL: http://host:9090")
    parser.add_argument("--out", required=True, type=Path, help="the PNG to write")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--minutes", type=float, default=15, help="the time range, up to now")
    parser.add_argument("--rate-interval", default="1m", help="$__rate_interval (default 1m)")
    parser.add_argument(
        "--var", action="append", default=[], type=variable, help="NAME=VALUE (job=tead)"
    )
    parser.add_argument("--html", type=Path, help="also write the HTML page here")
    args = parser.parse_args()
    variables = dict(args.var)
    try:
        panels = snapshot(
            args.prometheus,
            args.out,
            dashboard_path=args.dashboard,
            minutes=args.minutes,
            rate_interval=args.rate_interval,
            variables=variables,
            html_path=args.html,
        )
    except (OSError, ValueError, RuntimeError, httpx.HTTPError, BrowserError) as exc:
        sys.exit(f"dashboard_snapshot: {exc}")
    empty = [p.title for p in panels if p.kind != "row" and not p.has_data]
    print(f"{args.out}: {len(panels)} panels" + (f"; no data: {', '.join(empty)}" if empty else ""))


if __name__ == "__main__":
    main()

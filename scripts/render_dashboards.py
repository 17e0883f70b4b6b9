#!/usr/bin/env python3
"""Plots Rivulet's Grafana dashboards from a running Prometheus, one PNG each.

Grafana is not needed: every panel of manifests/monitoring/dashboards/*.json
is drawn where its gridPos puts it, from the same queries (Prometheus'
/api/v1/query_range), with the panel's unit on the value axis and the
target's legendFormat in the legend. Stat panels show their last value.
Panels without data say "No data" and are listed on stderr.

    pip install matplotlib          # not a test dependency
    python3 scripts/render_dashboards.py --prometheus http://127.0.0.1:9090 \\
        --minutes 10 --out dashboards-png

`scripts/monitoring_demo.py` starts a cluster, Prometheus and load, then
calls this. docs/monitoring.md describes both.
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "manifests/monitoring/dashboards"

# Grafana's dark theme and classic palette, so the images read like the real thing.
BG, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e9e", "#2c3235"
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
           "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c"]
MAX_LEGEND = 8
GRID_COLS, ROW_INCHES, FIG_INCHES = 24, 0.5, 22


# --- units, as Grafana names them -----------------------------------------

def scaled(v, base, suffixes):
    sign, v = ("-" if v < 0 else ""), abs(v)
    i = 0
    while v >= base and i < len(suffixes) - 1:
        v, i = v / base, i + 1
    text = f"{v:.0f}" if v >= 100 or v == int(v) else f"{v:.3g}"
    return f"{sign}{text}{suffixes[i]}"


def seconds(v):
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if a < 1:
        return f"{v * 1e3:.3g} ms"
    return f"{v:.3g} s"


UNITS = {
    "bytes": ("bytes", lambda v: scaled(v, 1024, [" B", " KiB", " MiB", " GiB", " TiB"])),
    "Bps": ("bytes/s", lambda v: scaled(v, 1000, [" B/s", " kB/s", " MB/s", " GB/s"])),
    "percentunit": ("percent", lambda v: f"{v * 100:.3g}%"),
    "s": ("seconds", seconds),
    "ms": ("milliseconds", lambda v: seconds(v / 1000)),
    "ops": ("ops/s", lambda v: scaled(v, 1000, [" ops/s", "K ops/s", "M ops/s"])),
    "reqps": ("requests/s", lambda v: scaled(v, 1000, [" req/s", "K req/s", "M req/s"])),
    "short": ("", lambda v: scaled(v, 1000, ["", "K", "M", "B"])),
}


def unit_of(panel):
    """(value axis title, tick formatter): the title is the panel's own
    axisLabel, as Grafana shows it."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    _, fmt = UNITS.get(unit, (unit, lambda v: f"{v:.3g}"))
    return defaults.get("custom", {}).get("axisLabel", ""), fmt


# --- queries ----------------------------------------------------------------

def resolve(expr, variables):
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def query_range(url, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt, metric):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "")
    text = text.strip()
    if text:
        return text
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()))
    return "{" + labels + "}"


def panel_series(panel, args, variables, start, end, step):
    """[(legend, [datetime], [value])] over every target of the panel."""
    out = []
    for target in panel.get("targets", []):
        expr = resolve(target["expr"], variables)
        for series in query_range(args.prometheus, expr, start, end, step):
            times = [datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            out.append((legend(target.get("legendFormat"), series["metric"]), times, values))
    out.sort(key=lambda s: s[0])
    return out


# --- drawing ----------------------------------------------------------------

def style(ax):
    ax.set_facecolor(PANEL)
    for side in ax.spines.values():
        side.set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=7)
    ax.grid(True, color=GRID, linewidth=0.6)


def draw_timeseries(ax, panel, series, minutes):
    label, fmt = unit_of(panel)
    if len(series) > MAX_LEGEND:
        # The legend has room for some: name the largest.
        series = sorted(series, key=lambda s: -max(s[2], default=0))
    # Grafana's 10% fill, where it does not turn many series into mud.
    fill = 0.08 if len(series) <= 6 else 0
    handles, labels = [], []
    for i, (name, times, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        (line,) = ax.plot(times, values, color=color, linewidth=1.2)
        if fill:
            ax.fill_between(times, values, color=color, alpha=fill, linewidth=0)
        if i < MAX_LEGEND:
            # Handles given explicitly: matplotlib drops labels starting
            # with "_", such as __consumer_offsets.
            handles.append(line)
            labels.append(name)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=7))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if minutes <= 10 else "%H:%M"))
    if label:
        ax.set_ylabel(label, color=MUTED, fontsize=7)
    bottom, top = ax.get_ylim()
    if min((min(v, default=0) for _, _, v in series), default=0) >= 0:
        ax.set_ylim(bottom=0, top=max(top, 1e-9))
    extra = len(series) - MAX_LEGEND
    if extra > 0:
        handles.append(plt.Line2D([], [], color="none"))
        labels.append(f"+{extra} more")
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4,
              fontsize=6.5, frameon=False, labelcolor=TEXT, handlelength=1.2, columnspacing=1.2)


def draw_stat(ax, panel, series):
    _, fmt = unit_of(panel)
    ax.set_axis_off()
    values = [s[2][-1] for s in series if s[2]]
    total = values[0] if len(values) == 1 else sum(values)
    ax.text(0.5, 0.42, fmt(total), ha="center", va="center", fontsize=30, color=PALETTE[0],
            fontweight="bold", transform=ax.transAxes)


def render(path, args, variables, start, end, step):
    dash = json.loads(path.read_text())
    panels = dash["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 0.8
    height = rows * ROW_INCHES + header
    fig = plt.figure(figsize=(FIG_INCHES, height), facecolor=BG)
    span = f"{datetime.fromtimestamp(start):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(end):%H:%M}"
    shown = ", ".join(f"{k}={v}" for k, v in variables.items() if not k.startswith("__"))
    fig.text(0.01, 1 - 0.4 / height, dash["title"], color=TEXT, fontsize=16, va="center")
    fig.text(0.99, 1 - 0.4 / height, f"{span}   {shown}   (Prometheus data, rendered without Grafana)",
             color=MUTED, fontsize=9, va="center", ha="right")
    empty = []
    for panel in panels:
        g = panel["gridPos"]
        kind = panel.get("type", "timeseries")
        # Inches inside the panel's cell: room for the title, tick labels
        # and the legend below a time series.
        pad_l, pad_r, pad_t, pad_b = (0.85, 0.2, 0.45, 0.95) if kind == "timeseries" else (0.1, 0.1, 0.45, 0.1)
        cell_x, cell_w = g["x"] / GRID_COLS * FIG_INCHES, g["w"] / GRID_COLS * FIG_INCHES
        cell_top, cell_h = header + g["y"] * ROW_INCHES, g["h"] * ROW_INCHES
        frame = fig.add_axes([(cell_x + 0.04) / FIG_INCHES, 1 - (cell_top + cell_h - 0.04) / height,
                              (cell_w - 0.08) / FIG_INCHES, (cell_h - 0.08) / height])
        frame.set_facecolor(PANEL)
        frame.set_xticks([]), frame.set_yticks([])
        for side in frame.spines.values():
            side.set_color(GRID)
        frame.text(0.01 if kind == "timeseries" else 0.5, 1 - 0.22 / cell_h, panel["title"],
                   transform=frame.transAxes, color=TEXT, fontsize=9.5, fontweight="bold",
                   va="center", ha="left" if kind == "timeseries" else "center")
        ax = fig.add_axes([(cell_x + pad_l) / FIG_INCHES, 1 - (cell_top + cell_h - pad_b) / height,
                           (cell_w - pad_l - pad_r) / FIG_INCHES, (cell_h - pad_t - pad_b) / height])
        style(ax)
        try:
            series = panel_series(panel, args, variables, start, end, step)
        except Exception as error:  # a bad query is a finding, not a crash
            series = []
            empty.append(f"{panel['title']}: {error}")
            ax.text(0.5, 0.5, "Query error", ha="center", va="center", color="#e24d42",
                    transform=ax.transAxes)
            continue
        if not series:
            empty.append(panel["title"])
            ax.set_axis_off()
            ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, fontsize=12,
                    transform=ax.transAxes)
        elif kind == "stat":
            draw_stat(ax, panel, series)
        else:
            draw_timeseries(ax, panel, series, (end - start) / 60)
    out = args.out / f"{dash['uid']}.png"
    fig.savefig(out, dpi=args.dpi, facecolor=BG)
    plt.close(fig)
    if args.colors:
        from PIL import Image  # matplotlib's own dependency

        with Image.open(out) as image:
            image.convert("RGB").quantize(colors=args.colors).save(out, optimize=True)
    return out, empty


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    ap.add_argument("--minutes", type=float, default=15, help="time range ending now")
    ap.add_argument("--end", type=float, help="end of the range, Unix seconds (default now)")
    ap.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for "
                    "(Grafana uses 4 scrape intervals)")
    ap.add_argument("--namespace", default=".*", help="value of $namespace (a regex)")
    ap.add_argument("--cluster", default=".*", help="value of $cluster (a regex)")
    ap.add_argument("--out", type=Path, default=Path("dashboards-png"), help="output directory")
    ap.add_argument("--dpi", type=int, default=90)
    ap.add_argument("--colors", type=int, default=0,
                    help="quantize to this many colours (smaller files, e.g. 128); 0 keeps RGBA")
    ap.add_argument("dashboards", nargs="*", type=Path,
                    help="dashboard JSON files (default: manifests/monitoring/dashboards/*.json)")
    args = ap.parse_args(argv)
    args.prometheus = args.prometheus.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)
    end = args.end or time.time()
    start = end - args.minutes * 60
    step = max(5, int(args.minutes * 60 / 240))
    variables = {"namespace": args.namespace, "cluster": args.cluster,
                 "__rate_interval": args.rate_interval, "datasource": "prometheus"}
    files = args.dashboards or sorted(DASHBOARDS.glob("*.json"))
    all_empty = {}
    for path in files:
        out, empty = render(path, args, variables, start, end, step)
        print(f"{out}: {len(json.loads(path.read_text())['panels']) - len(empty)} panels with data")
        if empty:
            all_empty[path.stem] = empty
    for uid, titles in all_empty.items():
        print(f"{uid}: no data in {'; '.join(titles)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

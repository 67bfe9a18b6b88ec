"""Small charts drawn as SVG text: no plotting library, nothing fetched, nothing to install.

Each function returns a whole `<svg>` document with its width and height set, so a browser
decodes it as an image (`report_html` embeds them as base64 `data:` URIs in `<img>` tags).
Every label is XML-escaped: intent names and layer names come from user data.
"""

from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

WIDTH = 720
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif' font-size='12'"
BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#3b6fb6", "#e07b39", "#3a9b5a", "#c0392b", "#888888", "#7d5ba6"
HALO = "stroke='white' stroke-width='3' paint-order='stroke'"  # keeps a label readable over a bar
PALETTE = (BLUE, ORANGE, GREEN, RED, PURPLE, "#2aa1a8", "#b8860b", "#d36ba6")


def _t(s: object) -> str:
    return escape(str(s), quote=True)


def svg_document(width: int, height: int, body: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' {FONT}><rect width='100%' height='100%' fill='white'/>{body}</svg>")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about `n` of them)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
        if ticks[-1] >= hi:
            break
    return ticks


class _Axis:
    """A linear map from data to pixels."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float):
        self.lo, self.hi, self.p0, self.p1 = lo, hi if hi > lo else lo + 1.0, p0, p1

    def __call__(self, v: float) -> float:
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _title(text: str, width: int) -> str:
    return f"<text x='{width / 2:.0f}' y='18' text-anchor='middle' font-size='14' font-weight='bold'>{_t(text)}</text>"


def hbar_chart(title: str, items: Sequence[tuple[str, float]], fmt: Callable[[float], str],
               vmax: float | None = None, color: str = BLUE, note: str = "") -> str:
    """One horizontal bar per (label, value), in the given order."""
    label_w = min(300, 12 + 7 * max((len(lab) for lab, _ in items), default=4))
    row_h, top = 22, 34
    height = top + row_h * len(items) + 34
    vmax = vmax if vmax is not None else max((v for _, v in items), default=1.0) or 1.0
    x = _Axis(0.0, vmax, label_w, WIDTH - 70)
    body = [_title(title, WIDTH)]
    for tick in nice_ticks(0, vmax, 5):
        if tick > vmax * 1.0001:
            continue
        body.append(f"<line x1='{x(tick):.1f}' y1='{top - 4}' x2='{x(tick):.1f}' y2='{top + row_h * len(items)}' "
                    f"stroke='#e3e3e3'/><text x='{x(tick):.1f}' y='{top + row_h * len(items) + 14}' "
                    f"text-anchor='middle' fill='#555'>{_t(fmt(tick))}</text>")
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = max(0.0, x(min(value, vmax)) - x(0))
        shown = label if len(label) <= 42 else label[:40] + "..."
        body.append(f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{_t(shown)}</text>"
                    f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row_h - 6}' fill='{color}'/>"
                    f"<text x='{label_w + w + 4:.1f}' y='{y + 15}' fill='#333'>{_t(fmt(value))}</text>")
    if note:
        body.append(f"<text x='{label_w}' y='{height - 4}' fill='#666' font-size='11'>{_t(note)}</text>")
    return svg_document(WIDTH, height, "".join(body))


def stage_chart(title: str, stages: Sequence[tuple[str, float | None, float | None]], metric_label: str,
                fmt_metric: Callable[[float], str], size_label: str = "size") -> str:
    """Bars of a metric per stage (left axis) and a line of size per stage (right axis, log scale)."""
    height, top, bottom, left, right = 330, 40, 270, 70, WIDTH - 80
    values = [m for _, m, _ in stages if m is not None]
    sizes = [s for _, _, s in stages if s]
    lo_m = 0.0
    hi_m = max(values, default=1.0) or 1.0
    if 0 <= min(values, default=0) and hi_m <= 1.0:
        hi_m = 1.0
    y = _Axis(lo_m, hi_m * 1.08, bottom, top)
    band = (right - left) / max(1, len(stages))
    body = [_title(title, WIDTH)]
    for tick in nice_ticks(lo_m, hi_m, 5):
        if tick > hi_m * 1.08:
            continue
        body.append(f"<line x1='{left}' y1='{y(tick):.1f}' x2='{right}' y2='{y(tick):.1f}' stroke='#e3e3e3'/>"
                    f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end' fill='#555'>{_t(fmt_metric(tick))}</text>")
    body.append(f"<text transform='translate(16 {(top + bottom) / 2:.0f}) rotate(-90)' text-anchor='middle' "
                f"fill='{BLUE}'>{_t(metric_label)}</text>")
    for i, (name, m, _) in enumerate(stages):
        cx = left + band * (i + 0.5)
        if m is not None:
            bw = min(60.0, band * 0.6)
            body.append(f"<rect x='{cx - bw / 2:.1f}' y='{y(m):.1f}' width='{bw:.1f}' height='{bottom - y(m):.1f}' "
                        f"fill='{BLUE}' opacity='0.85'/><text x='{cx:.1f}' y='{y(m) - 4:.1f}' text-anchor='middle' "
                        f"font-size='11'>{_t(fmt_metric(m))}</text>")
        body.append(f"<text x='{cx:.1f}' y='{bottom + 16}' text-anchor='middle'>{_t(name)}</text>")
    if sizes:
        lo_s, hi_s = math.log10(min(sizes)), math.log10(max(sizes))
        if hi_s - lo_s < 1:
            lo_s, hi_s = lo_s - 0.5, hi_s + 0.5
        ys = _Axis(lo_s - 0.1, hi_s + 0.1, bottom, top)
        for tick in SIZE_TICKS:
            if lo_s - 0.1 <= math.log10(tick) <= hi_s + 0.1:
                body.append(f"<text x='{right + 6}' y='{ys(math.log10(tick)) + 4:.1f}' fill='{ORANGE}'>"
                            f"{_fmt_bytes(tick)}</text>")
        pts = [(left + band * (i + 0.5), ys(math.log10(s))) for i, (_, _, s) in enumerate(stages) if s]
        if len(pts) > 1:
            body.append(f"<polyline points='{' '.join(f'{a:.1f},{b:.1f}' for a, b in pts)}' fill='none' "
                        f"stroke='{ORANGE}' stroke-width='2' stroke-dasharray='5 3'/>")
        for (px, py), s in zip(pts, [s for _, _, s in stages if s]):
            body.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='5' fill='{ORANGE}'/>"
                        f"<text x='{px + 8:.1f}' y='{py - 6:.1f}' fill='{ORANGE}' font-size='11' {HALO}>{_fmt_bytes(s)}</text>")
        body.append(f"<text transform='translate({WIDTH - 14} {(top + bottom) / 2:.0f}) rotate(90)' "
                    f"text-anchor='middle' fill='{ORANGE}'>{_t(size_label)} (log scale)</text>")
    body.append(f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#333'/>")
    body.append(f"<rect x='{left}' y='{height - 26}' width='12' height='12' fill='{BLUE}'/>"
                f"<text x='{left + 18}' y='{height - 16}'>{_t(metric_label)}</text>"
                f"<circle cx='{left + 246}' cy='{height - 20}' r='5' fill='{ORANGE}'/>"
                f"<text x='{left + 256}' y='{height - 16}'>size: float32 weights, or the .tflite file</text>")
    return svg_document(WIDTH, height, "".join(body))


SIZE_TICKS = tuple(float(u * 10 ** k) for u in (1, 1024, 1024 ** 2, 1024 ** 3) for k in range(3))


def _fmt_bytes(n: float) -> str:
    """Bytes in B, KB, MB or GB of 1024 (as the rest of the suite prints them)."""
    for unit, div in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def scatter_chart(title: str, points: Sequence[tuple[str, float, float]], x_label: str, y_label: str,
                  fmt_x: Callable[[float], str], fmt_y: Callable[[float], str], front: Sequence[int] = ()) -> str:
    """Labelled points (label, x, y); `front` lists indices joined by a line (the Pareto front)."""
    height, top, bottom, left, right = 360, 36, 300, 76, WIDTH - 30
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    pad_x = (max(xs) - min(xs)) * 0.1 or abs(xs[0]) * 0.1 or 1.0
    pad_y = (max(ys) - min(ys)) * 0.15 or abs(ys[0]) * 0.05 or 0.01
    xt = nice_ticks(max(0.0, min(xs) - pad_x), max(xs) + pad_x, 6)
    yt = nice_ticks(min(ys) - pad_y, max(ys) + pad_y, 5)
    x = _Axis(xt[0], xt[-1], left, right)
    y = _Axis(yt[0], yt[-1], bottom, top)
    body = [_title(title, WIDTH)]
    for tick in xt:
        body.append(f"<line x1='{x(tick):.1f}' y1='{top}' x2='{x(tick):.1f}' y2='{bottom}' stroke='#eee'/>"
                    f"<text x='{x(tick):.1f}' y='{bottom + 16}' text-anchor='middle' fill='#555'>{_t(fmt_x(tick))}</text>")
    for tick in yt:
        body.append(f"<line x1='{left}' y1='{y(tick):.1f}' x2='{right}' y2='{y(tick):.1f}' stroke='#eee'/>"
                    f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end' fill='#555'>{_t(fmt_y(tick))}</text>")
    body.append(f"<text x='{(left + right) / 2:.0f}' y='{bottom + 36}' text-anchor='middle'>{_t(x_label)}</text>"
                f"<text transform='translate(16 {(top + bottom) / 2:.0f}) rotate(-90)' text-anchor='middle'>{_t(y_label)}</text>")
    if len(front) > 1:
        pts = sorted((x(points[i][1]), y(points[i][2])) for i in front)
        body.append(f"<polyline points='{' '.join(f'{a:.1f},{b:.1f}' for a, b in pts)}' fill='none' "
                    f"stroke='{GREEN}' stroke-width='2'/>")
    for i, (label, px, py) in enumerate(points):
        color = GREEN if i in front else PALETTE[i % len(PALETTE)]
        near_right = x(px) > right - 12 - 7 * len(label)  # keep the label inside the chart
        tx, anchor = (x(px) - 9, "end") if near_right else (x(px) + 9, "start")
        body.append(f"<circle cx='{x(px):.1f}' cy='{y(py):.1f}' r='6' fill='{color}' stroke='#333'/>"
                    f"<text x='{tx:.1f}' y='{y(py) - 8:.1f}' text-anchor='{anchor}' {HALO}>{_t(label)}</text>")
    body.append(f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' fill='none' stroke='#333'/>")
    return svg_document(WIDTH, height, "".join(body))


def _fmt_num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def histogram_chart(title: str, values: Sequence[float], x_label: str, markers: Sequence[tuple[str, float]],
                    bins: int = 48) -> str:
    """A histogram of positive `values` on a log x axis (a long tail stays readable), with labelled markers."""
    height, top, bottom, left, right = 300, 36, 240, 60, WIDTH - 30
    logs = [math.log10(max(v, 1e-9)) for v in values]
    lo, hi = min(logs), max(logs)
    if hi - lo < 0.3:  # a narrow spread: widen the axis around it
        lo, hi = lo - 0.15, hi + 0.15
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in logs:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    x = _Axis(lo, hi, left, right)
    y = _Axis(0, max(counts) * 1.1, bottom, top)
    body = [_title(title, WIDTH)]
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            t = math.log10(m) + decade
            if lo <= t <= hi:
                body.append(f"<line x1='{x(t):.1f}' y1='{top}' x2='{x(t):.1f}' y2='{bottom}' stroke='#eee'/>"
                            f"<text x='{x(t):.1f}' y='{bottom + 16}' text-anchor='middle' fill='#555'>"
                            f"{_fmt_num(m * 10.0 ** decade)}</text>")
    for tick in nice_ticks(0, max(counts), 4):
        body.append(f"<line x1='{left}' y1='{y(tick):.1f}' x2='{right}' y2='{y(tick):.1f}' stroke='#eee'/>"
                    f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end' fill='#555'>{tick:g}</text>")
    for i, c in enumerate(counts):
        x0, x1 = x(lo + i * width), x(lo + (i + 1) * width)
        body.append(f"<rect x='{x0:.1f}' y='{y(c):.1f}' width='{max(0.5, x1 - x0 - 1):.1f}' "
                    f"height='{bottom - y(c):.1f}' fill='{BLUE}'/>")
    colors = (GREEN, ORANGE, RED, PURPLE)
    for k, (label, v) in enumerate(markers):
        px = x(math.log10(max(v, 1e-9)))
        body.append(f"<line x1='{px:.1f}' y1='{top}' x2='{px:.1f}' y2='{bottom}' stroke='{colors[k % 4]}' "
                    f"stroke-width='2' stroke-dasharray='4 2'/><text x='{px + 4:.1f}' y='{top + 14 + 14 * k}' "
                    f"fill='{colors[k % 4]}' {HALO}>{_t(label)} {_fmt_num(v)}</text>")
    body.append(f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='#333'/>"
                f"<text x='{(left + right) / 2:.0f}' y='{bottom + 36}' text-anchor='middle'>{_t(x_label)} (log scale)</text>"
                f"<text transform='translate(16 {(top + bottom) / 2:.0f}) rotate(-90)' text-anchor='middle'>invokes</text>")
    return svg_document(WIDTH, height, "".join(body))


def line_chart(title: str, xs: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], x_label: str,
               y_label: str, vline: tuple[str, float] | None = None) -> str:
    """Lines over a shared x (values in [0, 1] on y), with an optional labelled vertical line."""
    height, top, bottom, left, right = 320, 36, 250, 60, WIDTH - 30
    x = _Axis(min(xs), max(xs), left, right)
    y = _Axis(0.0, 1.0, bottom, top)
    body = [_title(title, WIDTH)]
    for tick in nice_ticks(min(xs), max(xs), 6):
        if min(xs) <= tick <= max(xs):
            body.append(f"<line x1='{x(tick):.1f}' y1='{top}' x2='{x(tick):.1f}' y2='{bottom}' stroke='#eee'/>"
                        f"<text x='{x(tick):.1f}' y='{bottom + 16}' text-anchor='middle' fill='#555'>{tick:g}</text>")
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(f"<line x1='{left}' y1='{y(tick):.1f}' x2='{right}' y2='{y(tick):.1f}' stroke='#eee'/>"
                    f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end' fill='#555'>{tick:.0%}</text>")
    for k, (name, ys) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys))
        body.append(f"<polyline points='{pts}' fill='none' stroke='{color}' stroke-width='2'/>"
                    f"<rect x='{left + 8 + 190 * k}' y='{height - 28}' width='12' height='12' fill='{color}'/>"
                    f"<text x='{left + 26 + 190 * k}' y='{height - 18}'>{_t(name)}</text>")
    if vline is not None:
        label, v = vline
        body.append(f"<line x1='{x(v):.1f}' y1='{top}' x2='{x(v):.1f}' y2='{bottom}' stroke='#222' "
                    f"stroke-width='2' stroke-dasharray='6 3'/><text x='{x(v) + 5:.1f}' y='{top + 12}'>{_t(label)}</text>")
    body.append(f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' fill='none' stroke='#333'/>"
                f"<text x='{(left + right) / 2:.0f}' y='{bottom + 34}' text-anchor='middle'>{_t(x_label)}</text>"
                f"<text transform='translate(16 {(top + bottom) / 2:.0f}) rotate(-90)' text-anchor='middle'>{_t(y_label)}</text>")
    return svg_document(WIDTH, height, "".join(body))

"""Geometry of the timeline chart: one shared x axis (days since the index amputation, dates
under them), an events lane, an antibiotic lane and one panel per lab series. Numbers only; the
SVG is written by the page template (escaping in one place).

Greyscale-safe by construction: each series has its own marker shape, thresholds are dashed
lines with their value written beside them, positive results are filled and negative ones
hollow, and the early post-operative window is hatched as well as tinted.

A threshold's label never covers a lab value, the series' line or another text: it sits at the
right end of its line (above it, else below it), else at the left end, else at the first free
place along the line; when the line has no free place long enough it goes above the panel,
beside a dashed key.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from datetime import datetime

from ..clinical.finding import UNIT_DISPLAY
from .model import DAY, EARLY_DAYS, Event, Series, Timeline

WIDTH = 880
LEFT, RIGHT = 96, 44
LANE_H = 34
COURSE_H = 16
PANEL_H = 104
PANEL_GAP = 24
TOP = 10
BEFORE_DAYS = 30  # data up to this long before the amputation is drawn (a baseline)
SHORT = {"esr": "ESR", "crp": "CRP", "wbc": "WBC", "alkaline-phosphatase": "ALP"}
SHAPES = {"esr": "circle", "crp": "square", "wbc": "triangle", "alkaline-phosphatase": "diamond"}
LANES = (("surgery", "Surgery"), ("imaging", "Imaging"), ("microbiology", "Biopsy, culture"),
         ("ignored", "Other foot"))
TIP_WIDTH_CHARS = 58
# Text boxes for placing the threshold labels (12px text; 11px for the shading's label), drawn
# generously so that the real text fits inside in any of the page's fonts: DejaVu Sans, the widest
# of them, measures at most 6.6 px a character at 12px. Ascent and descent include the halo.
CHAR_W = {12: 7.0, 11: 6.4}
ASCENT, DESCENT = 12.5, 5.0
CLEAR = 2.0  # space kept free around marks and lines
DOT_R = 6.5  # half the size of the largest lab dot (the diamond, 5.5, and its stroke)
SLIDE = 8  # step between the places tried along a threshold line
KEY = 24  # length of the dashed key beside a label written above its panel


@dataclass
class Mark:
    x: float
    y: float
    shape: str
    filled: bool
    ident: str  # the event's anchor in the event list
    label: str  # accessible name (also the hover title)
    tip: list[str]  # lines of the tooltip shown on hover or keyboard focus
    tip_x: float = 0
    tip_y: float = 0
    ignored: bool = False


@dataclass
class Dot:
    x: float
    y: float
    above: bool
    title: str


@dataclass
class Panel:
    concept: str
    label: str
    unit: str
    top: float
    shape: str
    y_ticks: list[tuple[float, str]]
    threshold_y: float
    threshold_label: str
    dots: list[Dot]
    path: str
    hidden: int  # values outside the drawn time range
    label_x: float = 0
    label_y: float = 0  # the label's baseline
    label_anchor: str = "end"
    label_key: tuple[float, float] | None = None  # x1, x2 of the dashed key (label above panel)


@dataclass
class Bar:
    x1: float
    x2: float
    y: float
    label: str
    title: str
    open_end: bool


@dataclass
class Chart:
    height: float
    plot_left: float
    plot_right: float
    ticks: list[tuple[float, str, str]]
    shade: tuple[float, float] | None
    amputation_x: float | None
    lanes: list[tuple[str, float]]
    marks: list[Mark]
    bars: list[Bar]
    course_top: float
    panels: list[Panel]
    bottom: float
    caption: str
    first_day: float
    last_day: float
    no_course_text: str = ""
    notes: list[str] = field(default_factory=list)


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _day_step(span: float) -> int:
    for step in (1, 2, 7, 14, 28, 56, 91, 182, 364):
        if span / step <= 9:
            return step
    return 728


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _date(when: datetime) -> str:
    return when.strftime("%d %b %y").lstrip("0")


def layout(timeline: Timeline) -> Chart:
    """Place everything; the x range runs from the earliest drawn item (at most
    ``BEFORE_DAYS`` before the amputation) to the record's time."""
    now_day = timeline.day(timeline.now)
    dated = [timeline.day(p.when) for s in timeline.series for p in s.points]
    dated += [timeline.day(e.when) for e in timeline.events + timeline.ignored if e.when]
    dated += [timeline.day(c.start) for c in timeline.courses if c.start]
    floor = -BEFORE_DAYS if timeline.origin else -364
    first = min([0.0 if timeline.origin else now_day - 28, *[d for d in dated if d >= floor]])
    first = max(first, floor)
    last = max(now_day, 1.0)
    first = math.floor(first) - 1
    span = max(last - first, 7)
    left, right = LEFT, WIDTH - RIGHT

    def x(day: float) -> float:
        return left + (day - first) / span * (right - left)

    def in_range(day: float) -> bool:
        return first <= day <= last + 1

    step = _day_step(span)
    ticks = []
    start = math.ceil(first / step) * step
    for day in range(int(start), int(last) + 1, step):
        when = (timeline.origin or timeline.now) + day * DAY
        label = f"day {day}" if timeline.origin else ""
        ticks.append((x(day), label, _date(when)))

    y = TOP
    lanes = []
    marks: list[Mark] = []
    for lane, title in LANES:
        if lane == "ignored" and not timeline.ignored:
            continue
        lanes.append((title, y + LANE_H / 2))
        for event in [e for e in timeline.events + timeline.ignored if e.lane == lane]:
            if event.when is None or not in_range(timeline.day(event.when)):
                continue
            marks.append(_mark(timeline, event, x(timeline.day(event.when)), y + LANE_H / 2))
        y += LANE_H
    course_top = y + 4
    bars = []
    for course in timeline.courses:
        if course.start is None:
            continue
        d1 = max(timeline.day(course.start), first)
        d2 = timeline.day(course.end) if course.end else d1 + 1
        if d2 < first:
            continue
        span_text = (f"{_date(course.start)} to {_date(course.end)}" if course.end_known and
                     course.end else f"from {_date(course.start)}, "
                     + ("ongoing" if course.ongoing else "end not recorded"))
        bars.append(Bar(x(d1), max(x(min(d2, last + 1)), x(d1) + 4), course_top + len(bars)
                        * COURSE_H + COURSE_H / 2, course.label,
                        f"{course.label}: {span_text} ({course.ref})",
                        not course.end_known))
    y = course_top + max(len(bars), 1) * COURSE_H + PANEL_GAP
    panels = []
    for series in timeline.series:
        panels.append(_panel(series, y, x, in_range, timeline))
        y += PANEL_H + PANEL_GAP
    shade = None
    if timeline.origin is not None and first < EARLY_DAYS:
        shade = (x(max(0, first)), x(min(EARLY_DAYS, first + span)))
    amp_x = x(0) if timeline.origin is not None and in_range(0) else None
    for panel in panels:
        _place_label(panel, left, right, amp_x, shade if panel is panels[-1] else None)
    caption = (f"Days since the index amputation (day {timeline.days_now} on "
               f"{_date(timeline.now)}), dates below" if timeline.origin else
               "Dates (the amputation date is unknown, so days since it cannot be shown)")
    return Chart(y + 26, left, right, ticks, shade, amp_x, lanes, marks, bars, course_top,
                 panels, y - PANEL_GAP, caption, first, last,
                 "" if bars else "No antibiotic courses on record")


def _mark(timeline: Timeline, event: Event, x: float, y: float) -> Mark:
    shape = {"surgery": "bar", "imaging": "square", "microbiology": "diamond",
             "ignored": "square"}[event.lane]
    filled = event.polarity != "negative" and not event.ignored
    if event.lane == "imaging" and not event.ignored:
        filled = any(f.polarity != "negative" for f in event.findings)
    when = _date(event.when) if event.when else "date unknown"
    day = f", day {math.floor(timeline.day(event.when))}" if event.when and timeline.origin \
        else ""
    head = f"{event.title} ({when}{day})"
    if event.ignored:
        head = f"Ignored, {event.side} side: {head}"
    lines = [head]
    if event.result:
        lines.append(event.result)
    for finding in event.findings:
        lines.append(f"{finding.label}: {finding.word}")
        if finding.sentence:
            lines += [f"  “{part}" if i == 0 else f"   {part}" for i, part in enumerate(
                textwrap.wrap(finding.sentence + "”", TIP_WIDTH_CHARS - 3))]
    if not event.findings and event.lane == "imaging" and not event.result:
        lines.append("no mapped finding read")
    wrapped = []
    for line in lines[:14]:
        wrapped += textwrap.wrap(line, TIP_WIDTH_CHARS, subsequent_indent="   ") or [""]
    tip_w = TIP_WIDTH_CHARS * 6.4 + 12
    tip_x = min(max(x - tip_w / 2, 2), WIDTH - tip_w - 2)
    return Mark(x, y, shape, filled, event.anchor, " — ".join(lines[:3]), wrapped, tip_x,
                y + 14, event.ignored)


def _panel(series: Series, top: float, x, in_range, timeline: Timeline) -> Panel:  # type: ignore[no-untyped-def]
    shown = [p for p in series.points if in_range(timeline.day(p.when))]
    limit = series.threshold.value
    high = max([limit, *[p.value for p in shown]]) * 1.15
    step = _nice_step(high, 3)
    high = math.ceil(high / step) * step

    def y(value: float) -> float:
        return top + PANEL_H - value / high * PANEL_H

    ticks = [(y(v * step), _fmt(v * step)) for v in range(round(high / step) + 1)]
    dots = []
    for p in shown:
        day = math.floor(timeline.day(p.when))
        when = _date(p.when) + (f", day {day}" if timeline.origin else "")
        dots.append(Dot(x(timeline.day(p.when)), y(p.value), p.value > limit,
                        f"{series.label} {p.shown} on {when} ({p.ref})"))
    path = " ".join(("M" if i == 0 else "L") + f"{d.x:.1f},{d.y:.1f}" for i, d in enumerate(dots))
    unit = UNIT_DISPLAY.get(series.unit, series.unit)
    return Panel(series.concept, SHORT[series.concept], unit, top, SHAPES[series.concept], ticks,
                 y(limit), f"{series.threshold.label} ({series.threshold.source.cite()})", dots,
                 path, len(series.points) - len(shown))


Box = tuple[float, float, float, float]  # x1, y1, x2, y2


def _text_box(x: float, baseline: float, text: str, size: int = 12) -> Box:
    return x, baseline - ASCENT, x + len(text) * CHAR_W[size], baseline + DESCENT


def _meets(box: Box, x1: float, y1: float, x2: float, y2: float) -> bool:
    """Whether the segment (x1, y1)-(x2, y2) meets the box (Liang-Barsky clipping)."""
    low, high = 0.0, 1.0
    for p, q in ((x1 - x2, x1 - box[0]), (x2 - x1, box[2] - x1),
                 (y1 - y2, y1 - box[1]), (y2 - y1, box[3] - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def _place_label(panel: Panel, left: float, right: float, amp_x: float | None,
                 shade: tuple[float, float] | None) -> None:
    """Put the threshold label where it covers no dot, no stretch of the series' line, no other
    text of the panel and not the amputation line (see the module's docstring for the order)."""
    bottom = panel.top + PANEL_H
    boxes: list[Box] = [(d.x - DOT_R, d.y - DOT_R, d.x + DOT_R, d.y + DOT_R) for d in panel.dots]
    if not panel.dots:
        boxes.append(_text_box(left + 6, panel.top + 60, f"no {panel.label} values on record"))
    if shade is not None:  # "first 14 post-op days", written at the bottom of the last panel
        boxes.append(_text_box(shade[0] + 3, bottom - 4, "first 14 post-op days", 11))
    segments = [(a.x, a.y, b.x, b.y) for a, b in zip(panel.dots, panel.dots[1:], strict=False)]
    if amp_x is not None:
        segments.append((amp_x, panel.top, amp_x, bottom))
    text = panel.threshold_label
    width = len(text) * CHAR_W[12]

    def free(x0: float, baseline: float) -> bool:
        box = _text_box(x0, baseline, text)
        if box[1] < panel.top - 4 or box[3] > bottom - 1:
            return False
        grown = (box[0] - CLEAR, box[1] - CLEAR, box[2] + CLEAR, box[3] + CLEAR)
        return not any(b[0] < grown[2] and grown[0] < b[2] and b[1] < grown[3]
                       and grown[1] < b[3] for b in boxes) and \
            not any(_meets(grown, *s) for s in segments)

    above, below = panel.threshold_y - DESCENT, panel.threshold_y + ASCENT
    first, last = left + 6, right - width
    places = [last, first, *[last - i * SLIDE for i in range(1, int((last - first) // SLIDE))]]
    for x0 in places:
        for baseline in (above, below):
            if x0 >= first and free(x0, baseline):
                panel.label_x, panel.label_anchor = (right, "end") if x0 == last else (x0, "start")
                panel.label_y = baseline
                return
    # Nowhere on the line: above the panel (the gap between panels holds nothing else, but the
    # amputation line crosses it), beside a short dashed key that ties it to the line: right
    # aligned with the key after it, else left aligned after the key, slid clear of that line
    # (a label too long for either side of it stays right aligned, across it).
    panel.label_y = panel.top - 6
    panel.label_key = (right - KEY, right)
    panel.label_x, panel.label_anchor = right - KEY - 6, "end"

    def clear_of_amputation(x1: float, x2: float) -> bool:
        return amp_x is None or not x1 - CLEAR <= amp_x <= x2 + CLEAR

    if clear_of_amputation(right - KEY - 6 - width, right):
        return
    x0 = left + 6
    while x0 + KEY + 6 + width <= right:
        if clear_of_amputation(x0, x0 + KEY + 6 + width):
            panel.label_key = (x0, x0 + KEY)
            panel.label_x, panel.label_anchor = x0 + KEY + 6, "start"
            return
        x0 += SLIDE

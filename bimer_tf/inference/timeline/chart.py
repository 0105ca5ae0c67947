"""timeline.png: the emotion probabilities of a recording over time (matplotlib, Agg).

Two panels sharing a time axis in m:ss (h:mm:ss past an hour):

- top, a strip: each segment as a span in its label's colour, its label
  above it (on a second row where the first is taken; left out where both
  are, and on a recording so long that the stack below is binned);
- below, the probabilities of each segment stacked to 1 over its span
  (pauses stay white), dropped stretches hatched. Where segments are
  narrower than 4 pixels (the median; a recording of an hour), the stack
  shows their means over bins of a round number of seconds instead
  (weighted by each segment's seconds in the bin; the axis says how wide).

Colours follow the emotion's name, so `angry` has the same colour in every
chart whatever the model's label order (`EMOTION_COLOURS`); other labels get
the next unused colour of a fixed palette. The legend lists the labels in the
model's order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bimer_tf.inference.timeline.segments import owned_seconds

EMOTION_COLOURS = {
    "neutral": "#9e9e9e",
    "calm": "#80cbc4",
    "happy": "#f9a825",
    "joy": "#f9a825",
    "happiness": "#f9a825",
    "excited": "#ff7043",
    "sad": "#1e88e5",
    "sadness": "#1e88e5",
    "angry": "#d32f2f",
    "anger": "#d32f2f",
    "frustrated": "#8d6e63",
    "fear": "#7b1fa2",
    "fearful": "#7b1fa2",
    "disgust": "#388e3c",
    "disgusted": "#388e3c",
    "surprise": "#ec407a",
    "surprised": "#ec407a",
    "boredom": "#5c6bc0",
    "optimism": "#43a047",
    "positive": "#43a047",
    "negative": "#c62828",
}
MIN_SEGMENT_PX = 4  # narrower segments (on the median) are drawn as means over bins this wide, or more
BIN_STEPS_S = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300)
LABEL_PX_PER_CHAR = 6.2  # an 8 pt label's width per character at the figure's 110 dpi, about
PALETTE = ("#00897b", "#6d4c41", "#3949ab", "#c0ca33", "#00acc1", "#8e24aa", "#fb8c00", "#546e7a")


def label_colours(labels) -> dict:
    """label -> colour: the emotion's own colour, else the palette's next unused one."""
    used, colours, spare = set(), {}, iter(PALETTE * (len(labels) // len(PALETTE) + 1))
    for label in labels:
        colour = EMOTION_COLOURS.get(str(label).lower())
        if colour is None or colour in used:
            colour = next(c for c in spare if c not in used)
        colours[label] = colour
        used.add(colour)
    return colours


def clock(seconds: float, _position=None) -> str:
    """m:ss, or h:mm:ss from one hour."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def tick_step(duration_s: float, ticks: int = 12) -> float:
    """A round tick spacing giving at most about `ticks` ticks."""
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration_s / step <= ticks:
            return step
    return 7200


def binned_probabilities(timeline, bin_s: float):
    """(bin edges, [bins, C] mean probabilities weighted by each segment's own seconds in the bin; NaN: no speech)."""
    count = max(1, int(np.ceil(timeline.duration_s / bin_s)))
    edges = np.arange(count + 1) * bin_s
    weight = np.zeros(count)
    total = np.zeros((count, len(timeline.labels)))
    owned = owned_seconds([s.segment for s in timeline.segments])
    for scored, own in zip(timeline.segments, owned):
        start, end = scored.segment.start_s, scored.segment.start_s + own
        for b in range(int(start // bin_s), min(count, int(np.ceil(end / bin_s)))):
            overlap = min(end, edges[b + 1]) - max(start, edges[b])
            if overlap > 0:
                weight[b] += overlap
                total[b] += overlap * scored.probabilities
    means = np.full_like(total, np.nan)
    spoken = weight > 0
    means[spoken] = total[spoken] / weight[spoken, None]
    return edges, means


def draw_timeline(timeline, path: str | Path) -> Path:
    """Draws `timeline` (a `Timeline`) into a PNG at `path`."""
    # The Agg canvas directly: no pyplot, no global backend, safe in any thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    labels = list(timeline.labels)
    colours = label_colours(labels)
    duration = max(timeline.duration_s, 1e-3)
    width_in = min(24.0, max(12.0, duration / 30.0))  # wider for long recordings, within reason
    figure = Figure(figsize=(width_in, 5.2), dpi=110)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 1, height_ratios=[1.3, 5], hspace=0.08)
    strip = figure.add_subplot(grid[0])
    axes = figure.add_subplot(grid[1], sharex=strip)

    # Rectangles gathered into one collection per colour, not a patch per segment.
    def boxes(x0: float, x1: float, y0: float, y1: float) -> list:
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]

    spans = {label: [] for label in labels}
    stacks = {label: [] for label in labels}
    seconds_per_px = duration / (figure.get_figwidth() * figure.dpi * 0.93)
    # Segments narrower than a few pixels (a long recording) are averaged over bins of that width.
    widths = [s.segment.duration_s for s in timeline.segments]
    binned = bool(widths) and float(np.median(widths)) < MIN_SEGMENT_PX * seconds_per_px
    bin_s = next((step for step in BIN_STEPS_S if step >= MIN_SEGMENT_PX * seconds_per_px), BIN_STEPS_S[-1])
    rows_end = [-1.0, -1.0]  # where the last label of each row of the strip ends, in seconds
    for scored in timeline.segments:
        start, end = scored.segment.start_s, scored.segment.end_s
        spans[scored.label].append(boxes(start, end, 0.0, 0.45))
        # The label above its span, on the first row where it does not run into the last one.
        middle, half = (start + end) / 2, (LABEL_PX_PER_CHAR * len(scored.label) / 2 + 3) * seconds_per_px
        for row, y in enumerate((0.52, 0.8)):
            if not binned and middle - half > rows_end[row]:
                strip.text(middle, y, scored.label, ha="center", va="bottom", fontsize=8, clip_on=True)
                rows_end[row] = middle + half
                break
        if not binned:
            bottom = 0.0
            for label, p in zip(labels, scored.probabilities):
                stacks[label].append(boxes(start, end, bottom, bottom + float(p)))
                bottom += float(p)
    for label in labels:
        strip.add_collection(PolyCollection(spans[label], facecolors=colours[label], alpha=0.85, linewidths=0))
        axes.add_collection(PolyCollection(stacks[label], facecolors=colours[label], alpha=0.9, linewidths=0))
    if binned:
        edges, means = binned_probabilities(timeline, bin_s)
        covered = ~np.isnan(means[:, 0])
        bottom = np.zeros(len(means))
        for k, label in enumerate(labels):
            top = bottom + np.nan_to_num(means[:, k])
            axes.fill_between(edges[:-1], bottom, top, where=covered, step="post", color=colours[label], alpha=0.9, linewidth=0)
            bottom = top
    elif timeline.segments:  # a thin white line where each segment starts
        axes.vlines([s.segment.start_s for s in timeline.segments], 0, 1, colors="white", linewidth=0.6)
    if timeline.dropped:
        axes.add_collection(
            PolyCollection(
                [boxes(d.start_s, d.end_s, 0.0, 1.0) for d in timeline.dropped],
                facecolors="none", edgecolors="#bdbdbd", hatch="///", linewidths=0,
            )
        )

    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.tick_params(labelbottom=False, bottom=False)
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)
    axes.set_xlim(0, duration)
    axes.set_ylim(0, 1)
    axes.set_ylabel(f"probability, mean per {bin_s:g} s" if binned else "probability")
    axes.set_xlabel("time (m:ss)" if duration < 3600 else "time (h:mm:ss)")
    axes.xaxis.set_major_locator(MultipleLocator(tick_step(duration)))
    axes.xaxis.set_major_formatter(FuncFormatter(clock))
    axes.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    axes.set_axisbelow(True)

    summary = timeline.summary()
    name = Path(timeline.source).name if timeline.source else "recording"
    if summary["dominant"] is None:
        title = f"{name}: no segment scored"
        axes.text(duration / 2, 0.5, "no speech segments", ha="center", va="center", color="#757575")
    else:
        share = summary["emotions"][summary["dominant"]]["share"]
        title = (
            f"{name}: mostly {summary['dominant']} ({share:.0%} of {clock(summary['speech_s'])} of speech), "
            f"{summary['segment_count']} segments"
        )
    strip.set_title(title, fontsize=11, loc="left")
    handles = [Patch(color=colours[label], label=label) for label in labels]
    if timeline.dropped:
        handles.append(Patch(facecolor="none", edgecolor="#bdbdbd", hatch="///", label="dropped"))
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(handles), frameon=False)
    figure.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.2)
    path = Path(path)
    figure.savefig(path, format="png")
    return path

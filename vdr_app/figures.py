"""Plotly figures: a page image with per-patch maps drawn over it. The only module importing plotly.

Every function takes plain data (a page background, patch boxes/cells, per-patch arrays from
`vdr_app.heatmap`) and returns a `plotly.graph_objects.Figure`; functions are independent of
each other so new ones can be added without touching the rest.

Geometry. Patches are placed by `PageEmbedding.boxes`/`cells`, so every family works: ColPali's
32x32 grid, ColQwen2's dynamic grid, colSmol's tiles (together one grid over the page, region 0).
Regions other than 0 are other views of the same page (colSmol's 8x8 global thumbnail): drawing
them over the page would hide the tiles, so they get their own small panel beside it, labelled.
Regular grids are drawn as one heatmap per layer (fast); free-form boxes (e.g. a text-layout
encoder's word boxes) as filled rectangles binned by colour.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from . import heatmap
from .memory import format_bytes
from .pareto import pareto_front

# Low scores fade to transparent so the page stays readable under the map.
HEAT_SCALE = [
    [0.0, "rgba(255,237,160,0.0)"],
    [0.35, "rgba(254,178,76,0.35)"],
    [0.7, "rgba(240,59,32,0.6)"],
    [1.0, "rgba(165,0,38,0.8)"],
]
# Attention: a sequential map whose every value is visible (the lowest cells a pale wash), dark
# enough at the top to read at a glance, translucent enough to read the words under it.
ATTENTION_SCALE = [
    [0.0, "rgba(255,255,204,0.30)"],
    [0.25, "rgba(254,217,118,0.45)"],
    [0.5, "rgba(253,141,60,0.55)"],
    [0.75, "rgba(227,26,28,0.60)"],
    [1.0, "rgba(128,0,38,0.68)"],
]
# Quantisation error (1 - cos between a float vector and its code): a blue-purple map, so it does not
# read as attention.
ERROR_SCALE = [
    [0.0, "rgba(237,248,251,0.25)"],
    [0.33, "rgba(158,188,218,0.45)"],
    [0.66, "rgba(136,86,167,0.60)"],
    [1.0, "rgba(77,0,75,0.72)"],
]
PRUNED_COLOUR = "rgba(100,116,139,0.42)"  # a translucent grey wash: the words stay readable
KEPT_EDGE = "rgba(21,128,61,0.95)"
GROUP_EDGE = "rgba(15,23,42,0.85)"
HIGHLIGHT_EDGE = "#facc15"
GROUP_PALETTE = [
    "rgba(31,119,180,0.30)", "rgba(255,127,14,0.30)", "rgba(44,160,44,0.30)", "rgba(214,39,40,0.30)",
    "rgba(148,103,189,0.30)", "rgba(140,86,75,0.30)", "rgba(227,119,194,0.30)", "rgba(188,189,34,0.30)",
    "rgba(23,190,207,0.30)", "rgba(127,127,127,0.30)",
]  # fmt: skip
_BINS = 10  # colour bins for free-form boxes
LEGEND_TOP_PX = 34  # the legend starts below the toolbar's row (plotly's modebar is ~30 px high)


@dataclass(frozen=True)
class PageBackground:
    """A page image ready to embed in figures.

    Attributes:
        source: the image as a JPEG data URI (encoded once, reused by every figure of the page).
        width, height: its size in pixels; figure coordinates are these pixels.
    """

    source: str
    width: int
    height: int


def page_background(image: Image.Image, max_side: int = 1000, quality: int = 80) -> PageBackground:
    """Downscale and JPEG-encode a page for figures (cache the result per page: it takes ~10 ms).

    Args:
        image: the page.
        max_side: longest side in pixels after downscaling.
        quality: JPEG quality.
    """
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return PageBackground(uri, image.width, image.height)


@dataclass
class _Layer:
    """One per-patch layer of a panel. kind: "scale" (0-1 values on `scale`), "mask" (one
    colour where finite), "category" (palette index >= 0), "outline" (lines around every group of
    equal labels >= 0) or "hover" (transparent, carries text and `custom` per patch)."""

    kind: str
    values: np.ndarray  # (n,) over all patches of the page; NaN / -1 = not drawn
    name: str = ""
    colour: str = ""
    text: list[str] | None = None
    colorbar_title: str | None = None
    scale: list | None = None  # colour scale of a "scale" layer (HEAT_SCALE by default)
    width: float = 1.5  # line width of an "outline" layer
    custom: np.ndarray | None = None  # (n,) int per patch carried by a "hover" layer (group ids)
    ticktext: tuple[str, str, str] | None = None  # colour bar labels at 0, 0.5, 1 ("low", "", "high")


def _heatmap_trace(layer: _Layer, grid: heatmap.RegionGrid, bg: PageBackground, with_bar: bool,
                   bar_at: tuple[float, float] = (0.0, 1.0)) -> dict:
    """One layer over one regular region, as a heatmap trace (dict) placed on the page's pixels."""
    width, height = bg.width, bg.height
    dx = (grid.x1 - grid.x0) * width / grid.cols
    dy = (grid.y1 - grid.y0) * height / grid.rows
    values = layer.values.astype(np.float32)
    if layer.kind == "category":
        values = np.where(values >= 0, values, np.nan)
    z = grid.to_grid(values)  # (rows, cols)
    kw: dict = dict(
        type="heatmap", z=z, x0=grid.x0 * width + dx / 2, dx=dx, y0=grid.y0 * height + dy / 2, dy=dy,
        name=layer.name, showscale=False, hoverinfo="skip", xgap=0, ygap=0,
    )  # fmt: skip
    if layer.kind == "scale":
        kw.update(colorscale=layer.scale or HEAT_SCALE, zmin=0.0, zmax=1.0, showscale=with_bar)
        if with_bar:  # horizontal, under its own panel (a bar at the far right would sit by the other one)
            kw["colorbar"] = _colorbar(layer, bar_at)
    elif layer.kind == "mask":
        kw.update(colorscale=[[0, layer.colour], [1, layer.colour]], zmin=0, zmax=1,
                  z=np.where(np.isnan(z), np.nan, 1.0))
    elif layer.kind == "category":
        n = len(GROUP_PALETTE)
        scale = []
        for i, colour in enumerate(GROUP_PALETTE):
            scale += [[i / n, colour], [(i + 1) / n, colour]]
        kw.update(colorscale=scale, zmin=-0.5, zmax=n - 0.5)
    else:  # hover carrier: invisible, but answers the mouse with the patch description
        text = np.full((grid.rows, grid.cols), "", dtype=object)
        texts = np.asarray(layer.text, dtype=object)[grid.members]
        text[grid.cells_rc[:, 0], grid.cells_rc[:, 1]] = texts
        kw.update(z=np.where(np.isnan(z), np.nan, 0.0), colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
                  text=text, hoverinfo="text", hovertemplate="%{text}<extra></extra>")
        kw.pop("hoverinfo")
        if layer.custom is not None:  # group ids, read by the page's group highlighter
            custom = np.full((grid.rows, grid.cols), -1, dtype=np.int64)
            custom[grid.cells_rc[:, 0], grid.cells_rc[:, 1]] = np.asarray(layer.custom)[grid.members]
            kw["customdata"] = custom
    return kw


def _box_traces(layer: _Layer, members: np.ndarray, boxes: np.ndarray, bg: PageBackground) -> list[dict]:
    """One layer over free-form boxes: filled rectangles, one scatter trace (dict) per colour bin."""
    width, height = bg.width, bg.height
    b = boxes[members] * np.array([width, height, width, height])  # (n_r, 4) pixels
    values = layer.values[members]
    if layer.kind == "hover":
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        text = [layer.text[i] for i in members.tolist()] if layer.text else None
        trace = dict(type="scatter", x=cx, y=cy, mode="markers", marker=dict(size=6, opacity=0), text=text,
                     hovertemplate="%{text}<extra></extra>", showlegend=False)
        if layer.custom is not None:
            trace["customdata"] = np.asarray(layer.custom)[members]
        return [trace]
    if layer.kind == "outline":
        sel = b[np.asarray(values)[members] >= 0]
        xs, ys = [], []
        for x0, y0, x1, y1 in sel.tolist():
            xs += [x0, x1, x1, x0, x0, None]
            ys += [y0, y0, y1, y1, y0, None]
        return [dict(type="scatter", x=xs, y=ys, mode="lines", line=dict(color=layer.colour, width=layer.width),
                     hoverinfo="skip", showlegend=False, name=layer.name)] if xs else []
    if layer.kind == "scale":
        bins = np.where(np.isfinite(values), np.minimum((np.nan_to_num(values) * _BINS).astype(int), _BINS - 1), -1)
        colours = [_scale_colour((i + 0.5) / _BINS, layer.scale or HEAT_SCALE) for i in range(_BINS)]
    elif layer.kind == "mask":
        bins = np.where(np.isfinite(values), 0, -1)
        colours = [layer.colour]
    else:
        bins = np.where(values >= 0, values, -1).astype(int) % len(GROUP_PALETTE)
        bins[values < 0] = -1
        colours = GROUP_PALETTE
    traces = []
    for i, colour in enumerate(colours):
        sel = b[bins == i]
        if not len(sel):
            continue
        xs, ys = [], []
        for x0, y0, x1, y1 in sel.tolist():
            xs += [x0, x1, x1, x0, x0, None]
            ys += [y0, y0, y1, y1, y0, None]
        traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", fill="toself", fillcolor=colour,
                           line=dict(width=0), hoverinfo="skip", showlegend=False, name=layer.name))
    return traces


def _colorbar(layer: _Layer, at: tuple[float, float]) -> dict:
    """A thin horizontal colour bar under the panel spanning `at` (paper x domain)."""
    return dict(title=dict(text=layer.colorbar_title or "", side="right"), orientation="h", thickness=10,
                len=0.6 * (at[1] - at[0]), lenmode="fraction", x=(at[0] + at[1]) / 2, xanchor="center", y=-0.01,
                yanchor="top", tickvals=[0, 0.5, 1], ticktext=list(layer.ticktext or ("low", "", "high")))


def _outline_trace(layer: _Layer, grid: heatmap.RegionGrid, bg: PageBackground) -> dict | None:
    """Lines along every edge where the layer's labels change (group outlines), one trace."""
    segments, _ = heatmap.boundary_segments(grid, layer.values)
    if not len(segments):
        return None
    return dict(type="scatter", mode="lines", hoverinfo="skip", showlegend=False, name=layer.name,
                line=dict(color=layer.colour, width=layer.width), **_polyline(segments, bg))


def _polyline(segments: np.ndarray, bg: PageBackground) -> dict:
    """x and y lists (page pixels, None between segments) of (s, 4) segments in 0-1 coordinates."""
    px = np.asarray(segments, dtype=np.float64) * np.array([bg.width, bg.height, bg.width, bg.height])
    xs = np.full((len(px), 3), np.nan)
    ys = np.full((len(px), 3), np.nan)
    xs[:, 0], xs[:, 1], ys[:, 0], ys[:, 1] = px[:, 0], px[:, 2], px[:, 1], px[:, 3]
    as_list = lambda a: [None if np.isnan(v) else round(float(v), 1) for v in a.ravel()]  # noqa: E731
    return dict(x=as_list(xs), y=as_list(ys))


def _scale_colour(t: float, scale: list | None = None) -> str:
    """The colour of a colour scale (HEAT_SCALE by default) at t in [0, 1] (for binned drawing)."""
    scale = scale or HEAT_SCALE
    for (t0, c0), (t1, c1) in zip(scale, scale[1:]):
        if t <= t1:
            a = (t - t0) / (t1 - t0)
            v0 = np.array([float(x) for x in c0[5:-1].split(",")])
            v1 = np.array([float(x) for x in c1[5:-1].split(",")])
            r, g, b, alpha = v0 + a * (v1 - v0)
            return f"rgba({r:.0f},{g:.0f},{b:.0f},{alpha:.2f})"
    return scale[-1][1]


def _legend_entry(name: str, colour: str, edge: str = "#555") -> dict:
    """A legend-only square marker (plotly heatmaps have no legend symbol of their own)."""
    width = 1 if edge == "#555" else 2.5
    return dict(type="scatter", x=[None], y=[None], mode="markers", name=name, showlegend=True, hoverinfo="skip",
                marker=dict(symbol="square", size=13, color=colour, line=dict(width=width, color=edge)))


def _domains(weights: list[float], spacing: float) -> list[tuple[float, float]]:
    """Split [0, 1] into consecutive intervals proportional to `weights`, `spacing` apart."""
    usable = 1.0 - spacing * (len(weights) - 1)
    out, start = [], 0.0
    for w in weights:
        end = start + usable * w / sum(weights)
        out.append((start, min(end, 1.0)))
        start = end + spacing
    return out


def _page_figure(
    bg: PageBackground,
    boxes: np.ndarray,
    cells: np.ndarray,
    panels: list[tuple[str, list[_Layer]]],
    title: str,
    legend: list[tuple[str, ...]] = (),
    height: int | None = None,
    width_hint: int = 1300,
    highlight: dict | None = None,
) -> go.Figure:
    """Lay out panels side by side, each the page image with its layers over region 0; other
    regions (colSmol's global thumbnail) go to a narrow column of small panels on the right.

    `highlight` ({group id: {"x": [...], "y": [...]}} outlines in page pixels) goes into
    `layout.meta` with the main panels' axes, for the page's script that outlines the group
    under the mouse on every panel.

    The figure is assembled as plain dicts and wrapped without plotly's per-property validation:
    validating ~20 traces and axes costs ~50-100 ms, most of an Explore redraw.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    grids = heatmap.region_grids(boxes, cells)
    main = [g for g in grids if g.region == 0] or grids[:1]
    side = [g for g in grids if g not in main]
    n_main, n_side = len(panels), len(side) * len(panels)
    widths = [1.0] * n_main + ([0.42 if n_main > 1 else 0.3] if side else [])
    columns = _domains(widths, 0.025)
    side_rows = list(reversed(_domains([1.0] * n_side, 0.08))) if side else []  # top to bottom

    # (x domain, y domain, title, font size, grid, layers) per subplot
    cells_ = [(columns[p], (0.0, 1.0), name, 15, g, layers) for p, (name, layers) in enumerate(panels) for g in main]
    for s, grid in enumerate(side):
        for p, (_, layers) in enumerate(panels):
            cells_.append((columns[-1], side_rows[s * len(panels) + p],
                           f"global thumbnail, {len(grid.members)} tokens", 11, grid, layers))
    data: list[dict] = []
    layout: dict = dict(annotations=[])
    barred: set[str] = set()  # each distinct colour scale gets one bar, under its first panel
    main_axes = []
    for i, (xd, yd, name, size, grid, layers) in enumerate(cells_, start=1):
        suffix = "" if i == 1 else str(i)
        xref, yref = f"x{suffix}", f"y{suffix}"
        layout[f"xaxis{suffix}"] = dict(domain=list(xd), anchor=yref, visible=False, range=[0, bg.width],
                                        constrain="domain")
        layout[f"yaxis{suffix}"] = dict(domain=list(yd), anchor=xref, visible=False, range=[bg.height, 0],
                                        constrain="domain", constraintoward="top", scaleanchor=xref)
        layout["annotations"].append(dict(text=name, x=(xd[0] + xd[1]) / 2, y=yd[1], xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=size)))
        if grid in main:
            main_axes.append([xref, yref])
        traces = [dict(type="image", source=bg.source, x0=0.5, y0=0.5, hoverinfo="skip")]
        for layer in layers:
            with_bar = layer.kind == "scale" and grid in main and (layer.colorbar_title or "") not in barred
            if layer.kind == "outline" and grid.regular:
                outline = _outline_trace(layer, grid, bg)
                traces.extend([outline] if outline else [])
            elif grid.regular:
                traces.append(_heatmap_trace(layer, grid, bg, with_bar=with_bar, bar_at=xd))
            else:
                traces.extend(_box_traces(layer, grid.members, boxes, bg))
                if with_bar:  # free-form boxes are binned scatter fills: an invisible heatmap carries the bar
                    traces.append(dict(type="heatmap", z=[[0.0, 1.0]], x=[None, None], y=[None, None],
                                       colorscale=layer.scale or HEAT_SCALE, zmin=0.0, zmax=1.0, showscale=True,
                                       hoverinfo="skip", colorbar=_colorbar(layer, xd), opacity=0))
            if with_bar:
                barred.add(layer.colorbar_title or "")
        for trace in traces:
            trace.update(xaxis=xref, yaxis=yref)
        data.extend(traces)
    if highlight:
        # The trace the page's script fills with the outline of the group under the mouse.
        for xref, yref in main_axes:
            data.append(dict(type="scatter", x=[], y=[], mode="lines", name="highlighted group", showlegend=False,
                             hoverinfo="skip", line=dict(color=HIGHLIGHT_EDGE, width=4), xaxis=xref, yaxis=yref))
        layout["meta"] = dict(vdr_highlight=dict(axes=main_axes, groups=highlight))
    data.extend(_legend_entry(*entry) for entry in legend)

    top, bottom = 92, (48 if barred else 12)
    if height is None:
        # Fit the page's aspect: panels are as wide as the plot allows, so pick the height that
        # fills them instead of leaving bands above and below (width_hint: the usual plot width).
        panel_width = width_hint * 0.96 / (n_main + (widths[-1] if side else 0.0))
        height = int(min(max(panel_width * bg.height / max(bg.width, 1) + top + bottom, 380), 1000))
    layout.update(
        title=dict(text=title, x=0.01, y=0.995, yref="container", yanchor="top", font=dict(size=15)),
        height=height,
        margin=dict(l=8, r=8, t=top, b=bottom),
        plot_bgcolor="white",
        paper_bgcolor="white",
        # Second row of the top margin, right: the first row holds the title and plotly's toolbar
        # (modebar, top right), which a legend there would cover or be covered by.
        legend=dict(orientation="h", yanchor="top", y=1.0 - LEGEND_TOP_PX / height, yref="container", x=0.99,
                    xanchor="right", font=dict(size=12), bgcolor="rgba(255,255,255,0)"),
        hovermode="closest",
        showlegend=bool(legend),
    )
    return go.Figure(dict(data=data, layout=layout), _validate=False)


def _patch_labels(cells: np.ndarray, lines: list[list[str]]) -> list[str]:
    """Hover text per patch: its grid cell, then the given lines."""
    out = []
    for i, (region, row, col) in enumerate(np.asarray(cells).tolist()):
        where = f"patch {i} · row {row}, col {col}" + (f" · region {region}" if region else "")
        out.append("<br>".join([where] + [line[i] for line in lines]))
    return out


def exploration_figure(
    bg: PageBackground,
    boxes: np.ndarray,
    cells: np.ndarray,
    groups: np.ndarray,
    attention: np.ndarray | None = None,
    title: str = "",
    merging: bool = False,
    height: int | None = None,
    attention_label: str = "final-token attention",
    quant_cosine: np.ndarray | None = None,
    quant: str | None = None,
    centrality: np.ndarray | None = None,
    centrality_label: str | None = None,
) -> go.Figure:
    """The Explore view: the model's attention, and what a reduction kept, pruned or merged.

    Left panel: attention per patch as a colour map (robustly scaled to 0-1).
    Right panel: pruned patches under a translucent grey wash (the words stay readable), kept
    patches outlined in green; for merging strategies every group outlined and tinted (touching
    groups get different tints), and the group under the mouse outlined on both panels by the
    page's script (`layout.meta.vdr_highlight`). The legend names only what is on the page.

    Args:
        bg: the page (from `page_background`).
        boxes: float (n, 4) patch boxes in 0-1 page coordinates.
        cells: int (n, 3) (region, row, col).
        groups: int (n,) `Reduction.groups` (-1 pruned).
        attention: float (n,) or None when the encoder gives none.
        title: figure title.
        merging: outline and tint patches by group (otherwise kept patches are outlined as one).
        height: pixels; None fits the page's aspect to a ~1300 px wide plot.
        attention_label: what the attention is, as the left panel's title (e.g. a text
            encoder's "[CLS] attention").
        quant_cosine: for a quantised view, float (n,) the cosine between the float vector that
            stands for each patch and its dequantised code (NaN where pruned): drawn as a third
            panel of the error 1 - cos, scaled from the page's smallest to its largest error (the
            bar gives the values).
        quant: the quantiser's name ("int8", "int4", "int2", "binary") for that panel's title.
        centrality: float (n,) SAP's mid-layer centrality per patch, drawn as its own panel beside
            the attention (robustly scaled like it), so the two rankings can be compared.
        centrality_label: that panel's title; given without `centrality`, the panel is drawn
            empty under this title (e.g. to say the page needs a re-encode).
    """
    groups = np.asarray(groups, dtype=np.int64)
    n = groups.shape[0]
    sizes = heatmap.group_sizes(groups)
    if attention is not None:
        att = np.asarray(attention, dtype=np.float32)
        heat = heatmap.robust_normalise(att)
        att_text = [f"attention {a:.3g}" for a in att.tolist()]
    else:
        heat, att_text = np.full(n, np.nan, np.float32), ["attention: not given by this encoder"] * n
    fate = [("pruned" if g < 0 else f"group {g}: merged with {s - 1} other patches into one vector" if s > 1
             else f"kept as vector {g}") for g, s in zip(groups.tolist(), sizes.tolist())]
    lines = [att_text, fate]
    if centrality_label is not None:
        cen = None if centrality is None else np.asarray(centrality, dtype=np.float32)
        lines.insert(1, ["centrality: not stored"] * n if cen is None else [f"centrality {c:.3g}" for c in cen.tolist()])
    if quant_cosine is not None:
        cos = np.asarray(quant_cosine, dtype=np.float64)
        lines.append([f"{quant or 'quantised'}: cos {c:.5f} with the float vector (1 - cos {1 - c:.2g})"
                      if np.isfinite(c) else f"{quant or 'quantised'}: pruned" for c in cos.tolist()])
    hover = _patch_labels(cells, lines)
    any_pruned = bool((groups < 0).any())
    any_kept = bool((groups >= 0).any())
    pruned = np.where(groups < 0, 1.0, np.nan)
    att_name = attention_label if attention is not None else "attention (not available)"
    left = [_Layer("scale", heat, att_name, colorbar_title="attention", scale=ATTENTION_SCALE),
            _Layer("hover", heat, text=hover, custom=groups if merging else None)]
    right: list[_Layer] = []
    legend: list[tuple[str, ...]] = []
    highlight = None
    if merging:
        right.append(_Layer("category", heatmap.colour_groups(groups, cells, len(GROUP_PALETTE)), "merged groups"))
        right.append(_Layer("outline", groups, "group outlines", colour=GROUP_EDGE, width=1.2))
        n_groups = len(np.unique(groups[groups >= 0]))
        legend.append((f"{n_groups} merged groups (outlined; hover to highlight one)", GROUP_PALETTE[0], GROUP_EDGE))
        highlight = _group_outlines(bg, boxes, cells, groups)
    elif any_pruned and any_kept:
        right.append(_Layer("outline", np.where(groups >= 0, 0, -1), "kept", colour=KEPT_EDGE, width=2.0))
        legend.append(("kept (outlined)", "rgba(255,255,255,0)", KEPT_EDGE))
    if any_pruned:
        right.append(_Layer("mask", pruned, "pruned", colour=PRUNED_COLOUR))
        legend.append(("pruned (grey wash)", PRUNED_COLOUR))
    right.append(_Layer("hover", heat, text=hover, custom=groups if merging else None))
    if merging:
        decision = "merged groups" + (" / pruned" if any_pruned else "")
    elif any_pruned:
        decision = "kept / pruned"
    else:
        decision = "every patch kept"
    panels = [(att_name, left), (decision, right)]
    if centrality_label is not None:
        cen_heat = (np.full(n, np.nan, np.float32) if centrality is None
                    else heatmap.robust_normalise(np.asarray(centrality, dtype=np.float32)))
        panels.insert(1, (centrality_label, [
            _Layer("scale", cen_heat, centrality_label, colorbar_title="centrality", scale=ATTENTION_SCALE),
            _Layer("hover", cen_heat, text=hover, custom=groups if merging else None),
        ]))
    if quant_cosine is not None:
        error = 1.0 - np.asarray(quant_cosine, dtype=np.float64)
        finite = error[np.isfinite(error)]
        low, top = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if top - low < 0.05 * top:  # nearly uniform: show it against 0 rather than amplify noise
            low = 0.0
        span = top - low
        scaled = np.where(np.isfinite(error), (error - low) / span if span > 0 else 0.0, np.nan).astype(np.float32)
        panels.append((f"{quant or 'quantisation'} error per patch (1 − cos)", [
            _Layer("scale", scaled, "quantisation error", colorbar_title=f"1 − cos, float vs {quant or 'code'}",
                   scale=ERROR_SCALE, ticktext=(f"{low:.2g}", f"{(low + top) / 2:.2g}", f"{top:.2g}")),
            _Layer("hover", scaled, text=hover, custom=groups if merging else None),
        ]))
    return _page_figure(bg, boxes, cells, panels, title, legend, height, highlight=highlight)


def _group_outlines(bg: PageBackground, boxes: np.ndarray, cells: np.ndarray, groups: np.ndarray) -> dict:
    """{group id (str): {"x": [...], "y": [...]}}: each group's outline on the page, in pixels."""
    boxes = np.asarray(boxes, dtype=np.float64)
    per_group: dict[int, list[np.ndarray]] = {}
    for grid in heatmap.region_grids(boxes, cells):
        if grid.region != 0:
            continue
        if grid.regular:
            segments, sides = heatmap.boundary_segments(grid, groups)
            for side in (0, 1):
                for g in np.unique(sides[:, side]).tolist():
                    if g >= 0:
                        per_group.setdefault(g, []).append(segments[sides[:, side] == g])
        else:  # free-form boxes: each member's rectangle
            for i in grid.members.tolist():
                g = int(groups[i])
                if g >= 0:
                    x0, y0, x1, y1 = boxes[i]
                    per_group.setdefault(g, []).append(
                        np.array([[x0, y0, x1, y0], [x1, y0, x1, y1], [x1, y1, x0, y1], [x0, y1, x0, y0]]))
    return {str(g): _polyline(np.concatenate(parts), bg) for g, parts in per_group.items()}


def similarity_figure(
    bg: PageBackground,
    boxes: np.ndarray,
    cells: np.ndarray,
    similarity: np.ndarray,
    token: str,
    title: str = "",
    height: int | None = None,
) -> go.Figure:
    """A query token's similarity to every patch of a page (colpali-engine's interpretability
    map), for the full page or a view mapped back onto it (pruned patches NaN, drawn dimmed).

    Args:
        bg: the page.
        boxes: float (n, 4).
        cells: int (n, 3).
        similarity: float (n,) raw similarities (NaN where the view pruned the patch).
        token: the query token, for labels.
        title: figure title.
        height: pixels; None fits the page's aspect to a ~900 px wide plot.
    """
    sim = np.asarray(similarity, dtype=np.float32)
    heat = heatmap.normalise(sim)
    text = [("pruned in this view" if not np.isfinite(s) else f"similarity {s:.3f}") for s in sim.tolist()]
    hover = _patch_labels(cells, [[f"token “{token}”"] * len(sim), text])
    layers = [
        _Layer("scale", heat, f"similarity to “{token}”", colorbar_title="similarity (scaled)"),
        _Layer("mask", np.where(np.isfinite(sim), np.nan, 1.0), "pruned", colour=PRUNED_COLOUR),
        _Layer("hover", heat, text=hover),
    ]
    legend = [("pruned in this view", PRUNED_COLOUR)] if not np.isfinite(sim).all() else []
    return _page_figure(bg, boxes, cells, [(f"similarity to “{token}”", layers)], title, legend, height)


def message_figure(text: str, height: int = 300) -> go.Figure:
    """An empty figure carrying a message (nothing to show yet, or what went wrong)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=15))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, plot_bgcolor="white", paper_bgcolor="white", margin=dict(l=10, r=10, t=10, b=10))
    return fig


# -- evaluation: retention against memory ------------------------------------------------------------

FAMILY_COLOURS = {
    "random": "#7f7f7f", "attention": "#d62728", "docpruner": "#ff7f0e", "pool1d": "#8c564b",
    "pool2d": "#2ca02c", "cluster": "#1f77b4", "kmeans": "#17becf", "prune_then_merge": "#9467bd",
}


def _dotted(row: dict, path: str):
    value = row
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


QUANT_SYMBOLS = {None: "circle", "int8": "square", "int4": "triangle-up", "int2": "triangle-down", "binary": "diamond"}
QUANT_DASH = {None: "solid", "int8": "dash", "int4": "longdash", "int2": "dashdot", "binary": "dot"}


def _series_name(row: dict) -> str:
    name = row.get("family", "?")
    if row.get("search") == "two-stage":
        return name + " two-stage (off the frontier)"
    quant = row.get("quant")
    if quant:
        name += f" @{quant}"
        rescore = row.get("rescore")
        if rescore is not None:
            name += f" rescore {rescore}" if rescore else " no rescoring"
        share = row.get("rescore_share")
        if rescore and share is not None:
            name += f" ({share:.0%} of pages" + (", off the frontier)" if row.get("off_frontier") else ")")
    return name


def _bytes_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """1-2-5 ticks over [low, high] bytes, labelled in KB / MB / GB."""
    vals = []
    for exponent in range(int(math.floor(math.log10(max(low, 1)))), int(math.ceil(math.log10(max(high, 1)))) + 1):
        vals += [m * 10**exponent for m in (1, 2, 5)]
    vals = [v for v in vals if low / 1.5 <= v <= high * 1.5] or [low, high]
    return vals, [format_bytes(v) for v in vals]


def retention_figure(
    views: list[dict],
    y: str = "retention.ndcg@5",
    y_title: str = "nDCG@5 retention (view / full)",
    title: str | None = None,
    show_ci: bool = True,
) -> go.Figure:
    """The trade-off curve: a quality figure of each view against its memory, one line per family
    and precision, with the Pareto frontier over both axes (reduction and quantisation) marked.

    Args:
        views: rows as in `Evaluation.as_dict()["views"]`: "view", "family", optionally "quant"
            and "rescore" / "rescore_share" / "off_frontier", "memory" (with "bytes") or
            "memory_ratio", and the nested figure named by `y`; rows with "skipped" set or no
            value are left out; rows marked "off_frontier" (deep rescoring variants) are drawn
            hollow and faded and never placed on the frontier. The full index (family
            "full", no quantiser) is drawn as a single star.
        y: dotted path of the plotted value, e.g. "retention.ndcg@5" or "fidelity.overlap@10".
        y_title: the y-axis title.
        title: the figure title (default: "<y_title> vs memory").
        show_ci: for a "retention.<metric>" y, draw each row's "retention_ci.<metric>" interval
            ([low, high], e.g. a bootstrap over queries) as an error bar when present.

    Returns:
        A plotly figure with a log-scale x axis: bytes stored when every row has them, else the
        share of the full index's memory. Float16 views are circles on solid lines, int8 squares
        on dashed lines, int4 / int2 triangles (up / down) on long-dash / dash-dot lines, binary
        diamonds on dotted lines; the frontier is a black step line
        through ringed points.
    """
    fig = go.Figure()
    ci_path = "retention_ci." + y.split(".", 1)[1] if show_ci and y.startswith("retention.") else None
    rows = [r for r in views if not r.get("skipped") and _dotted(r, y) is not None]
    use_bytes = bool(rows) and all((r.get("memory") or {}).get("bytes") for r in rows)
    rows = [r for r in rows if use_bytes or r.get("memory_ratio") is not None]
    xs_all = [float(r["memory"]["bytes"]) if use_bytes else float(r["memory_ratio"]) for r in rows]
    series: dict[str, list] = {}
    for row, x in zip(rows, xs_all):
        ci = _dotted(row, ci_path) if ci_path else None
        interval = (float(ci[0]), float(ci[1])) if ci else None
        ratio = row.get("memory_ratio")
        series.setdefault(_series_name(row), []).append(
            (x, float(_dotted(row, y)), row.get("label", row["view"]), interval, ratio, row))
    palette = iter(GROUP_PALETTE)
    colours: dict[str, str] = {}
    for name, points in series.items():
        points.sort(key=lambda p: (p[0], p[1]))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        hover = [
            f"{n}<br>memory {format_bytes(x) if use_bytes else f'{x:.1%}'}"
            + (f" ({r:.2%} of full)" if use_bytes and r is not None else " of full" if not use_bytes else "")
            + f"<br>{y_title}: {v:.3f}" + (f"<br>95% CI [{c[0]:.3f}, {c[1]:.3f}]" if c else "")
            for x, v, n, c, r, _ in points
        ]
        first = points[0][5]
        family, quant = first.get("family", "?"), first.get("quant")
        if family == "full" and not quant:
            staged = first.get("search") == "two-stage"  # drawn hollow, under the full index's star
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", hovertext=hover, hoverinfo="text",
                                     name="full index two-stage (off the frontier)" if staged else "full index",
                                     marker=dict(symbol="star-open" if staged else "star", size=14, color="black")))
            continue
        cis = [p[3] for p in points]
        error_y = None
        if any(cis):
            error_y = dict(type="data", symmetric=False, thickness=1, width=3,
                           array=[(c[1] - v) if c else 0 for v, c in zip(ys, cis)],
                           arrayminus=[(v - c[0]) if c else 0 for v, c in zip(ys, cis)])
        if family not in colours:
            colours[family] = FAMILY_COLOURS.get(family) or next(palette, "rgba(0,0,0,0.6)")
        colour = "rgba(0,0,0,0.75)" if family == "full" else colours[family]
        off = bool(first.get("off_frontier"))
        symbol = QUANT_SYMBOLS.get(quant, "circle") + ("-open" if off else "")
        if off:
            hover = [h + "<br>" + p[5]["off_frontier"] + ": not on the frontier" for h, p in zip(hover, points)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, hovertext=hover, hoverinfo="text",
                                 line=dict(color=colour, width=1 if off else 2, dash=QUANT_DASH.get(quant, "solid")),
                                 marker=dict(size=9, symbol=symbol), error_y=error_y, opacity=0.45 if off else 1.0))
    front = pareto_front([(x, None if r.get("off_frontier") else float(_dotted(r, y))) for r, x in zip(rows, xs_all)])
    if front:
        fx = [xs_all[i] for i in front]
        fy = [float(_dotted(rows[i], y)) for i in front]
        names = [rows[i].get("label", rows[i]["view"]) for i in front]
        fig.add_trace(go.Scatter(
            x=fx, y=fy, mode="lines+markers", name="Pareto frontier", line=dict(color="black", width=1.5, dash="dash",
                                                                                 shape="hv"),
            marker=dict(size=16, symbol="circle-open", color="black", line=dict(width=2)),
            hovertext=[f"on the frontier: {n}" for n in names], hoverinfo="text"))
    fig.add_hline(y=1.0, line=dict(color="rgba(0,0,0,0.35)", dash="dash", width=1))
    if use_bytes and xs_all:
        tickvals, ticktext = _bytes_ticks(min(xs_all), max(xs_all))
        xaxis = dict(title="memory (bytes stored, log scale)", type="log", tickvals=tickvals, ticktext=ticktext)
    else:
        xaxis = dict(title="memory (share of the full index's bytes, log scale)", type="log", tickformat=".0%",
                     tickvals=[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    fig.update_layout(
        title=title or f"{y_title} vs memory",
        xaxis=xaxis,
        yaxis=dict(title=y_title, tickformat=".0%" if y.startswith(("retention", "fidelity")) else None),
        legend=dict(title="strategy, precision"),
        template="plotly_white",
        margin=dict(l=60, r=20, t=50, b=50),
        height=520,
    )
    return fig

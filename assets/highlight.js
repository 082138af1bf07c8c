() => {
  // Explore's merged groups: outline the group under the mouse on every page panel; a click pins
  // it (click it again to unpin). The figure carries each group's outline in
  // layout.meta.vdr_highlight = {axes: [[xref, yref], ...], groups: {id: {x: [...], y: [...]}}}.
  const NS = "http://www.w3.org/2000/svg";
  const axis = (ref) => ref.replace(/^x/, "xaxis").replace(/^y/, "yaxis");
  const groupOf = (point) => {
    if (point.customdata !== undefined && point.customdata !== null && point.customdata >= 0) return String(point.customdata);
    const m = /group (\d+):/.exec(point.text || "");
    return m ? m[1] : null;
  };
  const draw = (gd, group) => {
    const meta = gd.layout && gd.layout.meta && gd.layout.meta.vdr_highlight;
    const host = gd.querySelector(".svg-container");
    if (!host) return;
    let svg = host.querySelector("svg.vdr-highlight");
    if (!svg) {
      svg = document.createElementNS(NS, "svg");
      svg.setAttribute("class", "vdr-highlight");
      svg.style.cssText = "position:absolute;left:0;top:0;pointer-events:none;overflow:visible";
      host.appendChild(svg);
    }
    const outline = meta && group !== null ? meta.groups[group] : null;
    const full = gd._fullLayout;
    svg.setAttribute("width", full.width);
    svg.setAttribute("height", full.height);
    let d = "";
    if (outline) {
      for (const [xref, yref] of meta.axes) {
        const xa = full[axis(xref)], ya = full[axis(yref)];
        let pen = "M";
        for (let i = 0; i < outline.x.length; i++) {
          if (outline.x[i] === null) { pen = "M"; continue; }
          d += `${pen}${(xa._offset + xa.l2p(outline.x[i])).toFixed(1)},${(ya._offset + ya.l2p(outline.y[i])).toFixed(1)}`;
          pen = "L";
        }
      }
    }
    svg.innerHTML = d ? `<path d="${d}" fill="none" stroke="#111827" stroke-width="6" stroke-linecap="square"/>` +
      `<path d="${d}" fill="none" stroke="#facc15" stroke-width="3" stroke-linecap="square"/>` : "";
    svg.dataset.group = d ? group : "";
  };
  const hook = (gd) => {
    if (gd.dataset.vdrHooked || typeof gd.on !== "function") return;
    gd.dataset.vdrHooked = "1";
    let pinned = null;
    gd.on("plotly_hover", (e) => { const g = groupOf(e.points[0]); if (g !== null) draw(gd, g); });
    gd.on("plotly_unhover", () => draw(gd, pinned));
    gd.on("plotly_click", (e) => { const g = groupOf(e.points[0]); pinned = pinned === g ? null : g; draw(gd, pinned); });
    gd.on("plotly_afterplot", () => { pinned = null; draw(gd, null); });
  };
  setInterval(() => document.querySelectorAll(".js-plotly-plot").forEach(hook), 500);
}

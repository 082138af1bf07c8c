// Page viewer (vdr_app/ui/viewer.py): zoom, pan and close in the browser. Gradio runs this once
// per component with `element` (its root, kept across value changes), `props` and `watch`.
// The zoom is a scale of the image's own pixels; null means "fit the whole page".
let zoom = null;
const STEP = 1.25, MIN = 0.05, MAX = 8;
const root = () => element.querySelector(".vdr-viewer");
const pane = () => element.querySelector(".vdr-viewer-pane");
const image = () => element.querySelector(".vdr-viewer-pane img");

const fitScale = () => {
  const p = pane(), img = image();
  if (!p || !img || !img.naturalWidth) return 1;
  return Math.min(p.clientWidth / img.naturalWidth, p.clientHeight / img.naturalHeight);
};

// Scale the image, keeping the pane point (cx, cy) (default: its centre) over the same image point.
const apply = (next, cx, cy) => {
  const p = pane(), img = image(), box = root();
  if (!p || !img || !img.naturalWidth) return;
  const before = img.clientWidth || 1;
  const scale = next === null ? fitScale() : Math.min(MAX, Math.max(MIN, next));
  zoom = next === null ? null : scale;
  cx = cx ?? p.clientWidth / 2;
  cy = cy ?? p.clientHeight / 2;
  const fx = (p.scrollLeft + cx) / before, fy = (p.scrollTop + cy) / before;
  img.style.width = `${Math.round(img.naturalWidth * scale)}px`;
  img.style.height = "auto";
  p.classList.toggle("vdr-zoomed", zoom !== null && scale > fitScale() + 1e-6);
  const after = img.clientWidth;
  p.scrollLeft = fx * after - cx;
  p.scrollTop = fy * after - cy;
  const label = box.querySelector(".vdr-viewer-zoom");
  if (label) label.textContent = zoom === null ? `fit (${Math.round(scale * 100)} %)` : `${Math.round(scale * 100)} %`;
  box.dataset.zoom = scale.toFixed(3);
  box.dataset.fit = zoom === null ? "1" : "0";
};

const current = () => (zoom === null ? fitScale() : zoom);
const close = () => { zoom = null; props.value = ""; };
const act = (action, x, y) => {
  if (action === "close") close();
  else if (action === "in") apply(current() * STEP, x, y);
  else if (action === "out") apply(current() / STEP, x, y);
  else if (action === "fit") apply(null);
  else if (action === "actual") apply(1, x, y);
};

// Show the new page whole once its image is decoded.
const opened = () => {
  zoom = null;
  const img = image();
  if (!img) return;
  if (img.complete && img.naturalWidth) apply(null);
  else img.addEventListener("load", () => apply(null), { once: true });
  element.querySelector(".vdr-viewer-close")?.focus({ preventScroll: true });
};
watch("value", opened);
opened();

let drag = null, moved = false;
element.addEventListener("click", (e) => {
  const target = e.target.closest("[data-action]");
  if (target) { act(target.dataset.action); return; }
  if (e.target === image() && !moved) {  // a click (not a drag) on the page: whole page <-> 100 %
    const r = pane().getBoundingClientRect();
    act(zoom === null ? "actual" : "fit", e.clientX - r.left, e.clientY - r.top);
  }
});
element.addEventListener("wheel", (e) => {
  if (!root() || !(e.ctrlKey || e.metaKey)) return;  // a plain wheel scrolls the pane
  e.preventDefault();
  const r = pane().getBoundingClientRect();
  act(e.deltaY < 0 ? "in" : "out", e.clientX - r.left, e.clientY - r.top);
}, { passive: false });
element.addEventListener("pointerdown", (e) => {
  if (e.target !== image()) return;
  drag = { x: e.clientX, y: e.clientY, left: pane().scrollLeft, top: pane().scrollTop };
  moved = false;
});
window.addEventListener("pointermove", (e) => {
  if (!drag || !pane()) return;
  const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 4) moved = true;
  pane().scrollLeft = drag.left - dx;
  pane().scrollTop = drag.top - dy;
});
window.addEventListener("pointerup", () => { drag = null; });
window.addEventListener("resize", () => { if (root() && zoom === null) apply(null); });
document.addEventListener("keydown", (e) => {
  if (!root()) return;
  const keys = { Escape: "close", "+": "in", "=": "in", "-": "out", "0": "fit", "1": "actual" };
  if (keys[e.key]) { e.preventDefault(); act(keys[e.key]); }
});

"""The Lab tab: evaluate views on your own queries, with or without labels, in the browser.

Pick views (stored ones, any typed spec, or the default sweep), type queries one per line and
optionally upload a label file (JSON lines, as `python -m vdr_app eval --labels`); Run draws the
retention-vs-memory curve (x: bytes stored, log scale; quantised views as their own lines; the
Pareto frontier over reduction and quantisation marked), fills the table and offers every figure
as JSON. Quantised views are scored on their own codes; a rescoring depth, when asked for, adds a
variant row per quantised view with the share of the library it re-scores, and a variant that
re-scores more than 5 % of the pages is drawn hollow and left off the frontier. Without labels the
curve and table show label-free fidelity (overlap with the full index's ranking) instead.

The work is `run_lab` (plain Python, no gradio); `build_lab_tab(engine)` only lays out components
and wires events, each with an api_name so gradio_client can drive it:

    /lab_views   () -> the view choices (stored views + the sweep grid)
    /lab_run     (views, sweep, queries, labels_file, keep_views, rescore, two_stage) -> (figure, table, json_file,
                 summary)
    /lab_benchmark (dataset, max_pages, views, sweep, rescore, two_stage) -> the same, on a ViDoRe benchmark indexed
                 in a temporary library (`run_lab_benchmark`; the visitor's library is not touched)
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr
import pandas as pd

from ..errors import VdrError
from ..memory import format_bytes
from . import access
from .common import user_errors
from ..evaluate import (
    FIDELITY,
    MAX_FRONTIER_RESCORE_SHARE,
    METRICS,
    TWO_STAGE,
    Evaluation,
    curve_metric,
    evaluate,
    frontier_rows,
    load_labels,
    parse_queries,
    stored_page_counts,
    sweep_specs,
)
from ..evaluate.frontier import _dotted_value
from ..figures import retention_figure

LIBRARY, BENCHMARK = "your library", "a ViDoRe benchmark"
TARGETS = (LIBRARY, BENCHMARK)
# A hub dataset id ("owner/name"): what a visitor may name outside local mode.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")

TABLE_COLUMNS = ["view", "family", "precision", "rescore", "rescored share", "bytes", "memory", "vectors/page",
                 *METRICS,
                 "retention nDCG@5", *FIDELITY, "build s"]


def view_choices(engine) -> list[str]:
    """Stored views first, then the default sweep's specs not stored yet."""
    stored = engine.store.view_specs()
    return stored + [s for s in sweep_specs() if s not in stored]


def results_table(evaluation: Evaluation) -> pd.DataFrame:
    """One row per view: memory, label metrics (blank without labels), retention and fidelity."""
    rows = []
    for v in evaluation.views:
        if v.skipped:
            rows.append({"view": v.label, "family": v.family, "memory": None, "build s": None})
            continue
        row = {
            "view": v.label,
            "family": v.family,
            "precision": v.memory.get("precision", "float16"),
            "rescore": v.rescore,
            "rescored share": (None if not v.rescore else f"{v.rescore_share:.0%}"
                               + (" (off the frontier)" if v.off_frontier else "")),
            "bytes": format_bytes(v.memory.get("bytes", 0)),
            "memory": _round(v.memory_ratio, 6),
            "vectors/page": v.memory.get("per_page_mean"),
            **{m: _round(v.metrics.get(m)) for m in METRICS},
            "retention nDCG@5": _round(v.retention.get("ndcg@5")),
            **{f: _round(v.fidelity.get(f)) for f in FIDELITY},
            "build s": round(v.build_seconds, 2),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _round(value, places: int = 4):
    return None if value is None else round(float(value), places)


def run_lab(
    engine,
    views: Sequence[str] | None,
    sweep: bool,
    queries_text: str | None,
    labels_path: str | Path | None,
    progress: Callable[[float, str], None] | None = None,
    out_dir: str | Path | None = None,
    keep_views: bool = False,
    rescore: int | None = 0,
    two_stage: bool = False,
):
    """Evaluate the chosen views and return what the tab shows.

    Args:
        engine: the app's engine (documents must be indexed).
        views: view specs (stored or new; new ones are computed and stored).
        sweep: add the default sweep grid.
        queries_text: queries, one per line (fidelity only, unless also labelled).
        labels_path: a JSON-lines label file naming stored documents, or None.
        progress: progress(fraction, message).
        out_dir: where the JSON export is written (a fresh temp folder by default).
        keep_views: keep the views computed for this evaluation in the store; by default they are
            removed afterwards (a stored view is computed again for every later upload).
        rescore: a rescoring depth for quantised views: > 0 adds a rescoring variant of each
            (besides its own codes at rescore 0); 0 or None: the codes only.
        two_stage: also search every float view in two stages (a row "<view> two-stage" beside its
            exhaustive row: what the first stage loses on these queries; docs/scale.md).

    Returns:
        (plotly figure, table DataFrame, path of the JSON export, Markdown summary).

    Raises:
        VdrError: no documents, no queries, no views, a bad spec, a bad label file.
    """
    from ..errors import InvalidQueryError, NotFoundError

    if not engine.list_documents():
        raise NotFoundError("no documents indexed yet: add PDFs in the Library tab first")
    labels = load_labels(labels_path, stored_page_counts(engine)) if labels_path else []
    queries = parse_queries(queries_text or "")
    if not labels and not queries:
        raise InvalidQueryError("type at least one query (one per line) or upload a label file")
    specs, depths = _views_and_depths(views, sweep, rescore)
    stored_before = set(engine.store.view_specs())
    try:
        evaluation = evaluate(engine, specs, labels, queries, progress=progress, skip_unavailable=True,
                              rescore=depths, two_stage=bool(two_stage))
    finally:
        added = [v for v in engine.store.view_specs() if v not in stored_before]
        if not keep_views:
            for spec in added:
                engine.delete_view(spec)
    labelled = {label.query.strip() for label in labels}
    summary = _summary(evaluation, len(labels), len({q for q in queries if q.strip() not in labelled}))
    if added:
        summary += (f" {len(added)} new view{'s were' if len(added) != 1 else ' was'} computed for this run and "
                    + ("**kept in the store**." if keep_views else
                       "removed again (tick *keep the evaluated views* to store them)."))
    return _present(evaluation, summary, out_dir)


def _views_and_depths(views: Sequence[str] | None, sweep: bool, rescore) -> tuple[list[str], list[int] | int]:
    """The specs a Lab run evaluates and its rescoring depths (0: the codes only; a depth > 0 adds
    a rescored variant of each quantised view).

    Raises:
        InvalidSpecError: no view; InvalidQueryError: a bad depth.
    """
    from ..engine import check_rescore
    from ..errors import InvalidSpecError

    specs = list(views or []) + (sweep_specs() if sweep else [])
    if not specs:
        raise InvalidSpecError("pick at least one view, or tick 'default sweep'")
    depth = 0 if rescore is None or rescore == "" else check_rescore(rescore)
    return specs, [0, depth] if depth else 0


def _present(evaluation: Evaluation, summary: str, out_dir: str | Path | None):
    """(figure, table, JSON export path, summary + frontier notes) of an evaluation."""
    y, y_title = curve_metric(evaluation)
    data = evaluation.as_dict()
    figure = retention_figure(data["views"], y=y, y_title=y_title)
    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="vdr-lab-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evaluation.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    front = frontier_rows(data["views"], y)
    if front:
        summary += (" Pareto frontier (least memory for its " + y_title.split(" (")[0] + "): "
                    + " → ".join(f"`{r['label']}` ({format_bytes(r['memory']['bytes'])}, "
                                 f"{_dotted_value(r, y):.1%})" for r in front) + ".")
    off = [r for r in data["views"] if r.get("off_frontier") and r.get("rescore")]
    if off:
        summary += (f" {len(off)} rescoring variant{'s' if len(off) != 1 else ''} re-score"
                    f"{'' if len(off) != 1 else 's'} {off[0]['rescore_share']:.0%} of the library "
                    f"(more than {MAX_FRONTIER_RESCORE_SHARE:.0%}): drawn hollow, left off the frontier.")
    return figure, results_table(evaluation), str(path), summary


def benchmark_page_cap(settings) -> int | None:
    """The most benchmark pages one Lab run may encode: outside local mode (a Space, a shared
    app) no more than a visitor may add to a library (`VDR_SESSION_MAX_PAGES`); locally no cap."""
    return None if settings.mode == "local" else settings.session_max_pages


def run_lab_benchmark(
    engine,
    source: str | None,
    max_pages: float | None,
    views: Sequence[str] | None,
    sweep: bool,
    progress: Callable[[float, str], None] | None = None,
    out_dir: str | Path | None = None,
    rescore: int | None = 0,
    two_stage: bool = False,
):
    """Evaluate the chosen views on a ViDoRe benchmark instead of the library (docs/benchmark.md).

    The benchmark's pages are indexed with the engine's model into a temporary library
    (`temporary_library`), evaluated there and removed: the engine's own library is not changed,
    whatever happens. Everything that can be checked before encoding is (views, rescoring depth,
    source, page cap), so bad input costs nothing.

    Args:
        engine: the app's engine (its model is used; its library is left alone).
        source: "vidore/<dataset>" (hub), or in local mode also a folder saved with save_to_disk.
        max_pages: the first N pages and the queries they answer; None: every page (local mode
            only: elsewhere at most `benchmark_page_cap`).
        views, sweep, progress, out_dir, rescore, two_stage: as `run_lab`.

    Returns:
        (plotly figure, table DataFrame, path of the JSON export, Markdown summary).

    Raises:
        VdrError: a bad spec or depth, an unreadable or malformed dataset, too many pages.
    """
    from ..benchmark_data import BenchmarkError, index_benchmark, load_benchmark, temporary_library
    from ..types import log_progress, scaled_progress

    progress = progress or log_progress
    specs, depths = _views_and_depths(views, sweep, rescore)
    for spec in specs:
        engine.canonical_view(spec)  # a bad spec is refused before anything is downloaded or encoded
    source = (source or "").strip()
    local_mode = engine.settings.mode == "local"
    if source and not local_mode and not HUB_ID.fullmatch(source):
        raise BenchmarkError(f"{source!r}: give a ViDoRe dataset id such as vidore/docvqa_test_subsampled "
                             "(folders on the server are read in local mode only)")
    pages = None if max_pages is None or max_pages == "" else int(max_pages)
    cap = benchmark_page_cap(engine.settings)
    if cap is not None and (pages is None or pages > cap):
        raise BenchmarkError(f"at most {cap} benchmark pages per run on this app: set max pages to {cap} or less")
    progress(0.0, f"loading {source}")
    benchmark = load_benchmark(source, max_pages=pages)
    with temporary_library(engine) as library:
        documents, _ = index_benchmark(library, benchmark, scaled_progress(progress, 0.02, 0.6))
        evaluation = evaluate(library, specs, benchmark.labels, (), documents,
                              progress=scaled_progress(progress, 0.6, 1.0), skip_unavailable=True,
                              rescore=depths, two_stage=bool(two_stage))
    summary = (f"**Benchmark `{access.redact(source)}`** ({benchmark.layout} layout"
               + (f", first {len(benchmark.pages)} pages: not comparable with published figures" if pages else "")
               + "), indexed with the current model in a temporary library, removed after the run (your "
               "library is unchanged). " + _summary(evaluation, len(benchmark.labels), labels_from="the benchmark"))
    return _present(evaluation, summary, out_dir)


def _summary(evaluation: Evaluation, n_labels: int = 0, n_typed: int = 0, labels_from: str = "the file") -> str:
    evaluated = [v for v in evaluation.views[1:]
                 if not v.skipped and not v.rescore and v.search != TWO_STAGE]  # variants apart
    skipped = [v for v in evaluation.views if v.skipped]
    sources = []
    if n_labels:
        sources.append(f"{n_labels} labelled from {labels_from} (all metrics)")
    if n_typed:
        sources.append(f"{n_typed} typed in the box (fidelity only)")
    text = (f"**{len(evaluated)} views** against the full index on {evaluation.pages} pages of "
            f"{evaluation.documents} documents, {len(evaluation.queries)} queries "
            f"({'; '.join(sources) if sources else f'{evaluation.labelled} labelled'}).")
    if evaluation.labelled:
        full = evaluation.full.metrics
        text += (f" Full index: nDCG@5 {full['ndcg@5']:.3f}, recall@1 {full['recall@1']:.3f}, "
                 f"MRR@10 {full['mrr@10']:.3f}.")
    else:
        text += " No labels: the curve shows overlap@10 with the full index's ranking (label-free fidelity)."
    staged = [v for v in evaluation.views if v.search == TWO_STAGE and not v.skipped]
    if staged:
        plain = {v.view: v for v in evaluation.views if v.search != TWO_STAGE and not v.rescore}
        moved = [v for v in staged if v.view in plain
                 and [r["top"] for r in v.per_query] != [r["top"] for r in plain[v.view].per_query]]
        text += (f" {len(staged)} two-stage row{'s' if len(staged) != 1 else ''} search the same views through "
                 f"the first stage and exact MaxSim of its candidates (off the frontier: same bytes); "
                 + (f"{len(moved)} rank{'s' if len(moved) == 1 else ''} differently from exhaustive search."
                    if moved else "every one ranks exactly as exhaustive search on these queries."))
    if skipped:
        text += " Skipped: " + "; ".join(f"`{v.view}` ({v.skipped})" for v in skipped)
    return text


def build_lab_tab(engine) -> dict:
    """Lay out the Lab tab's components and wire its events (call inside `with gr.Tab("Lab"):`).

    Returns:
        The components by name, for the caller to wire further if it wants.
    """
    gr.Markdown(
        "Measure what each view keeps before you commit to it. **Without labels** you get fidelity: how "
        "far each view's top 10 moves from the full index's (overlap@5/10, Kendall τ@10). **With a label "
        'file** (JSON lines `{"query": ..., "file": "doc.pdf", "page": 3, "kind": "table"}`) you also get '
        "nDCG@5, recall@1/5, MRR@10 and their retention (view ÷ full)."
    )
    target = gr.Radio(list(TARGETS), value=LIBRARY, label="Evaluate on", elem_id="lab-target",
                      info="a ViDoRe benchmark is indexed with the current model in a temporary library, "
                           "apart from yours, and removed after the run")
    with gr.Row():
        with gr.Column(scale=2):
            views = gr.Dropdown(
                choices=view_choices(engine), multiselect=True, allow_custom_value=True, label="Views",
                info="stored views, sweep specs, or type one (e.g. cluster:factor=9)",
            )
            with gr.Row():
                sweep = gr.Checkbox(label=f"default sweep ({len(sweep_specs())} views)", value=False)
                keep = gr.Checkbox(label="keep the evaluated views in the store", value=False,
                                   info="off: views computed for this run are removed afterwards")
                refresh = gr.Button("↻ views", size="sm")
            two_stage = gr.Checkbox(label="also search in two stages", value=False, elem_id="lab-two-stage",
                                    info="a row per float view searched through the first stage + exact MaxSim "
                                         "of its candidates (how large libraries are searched), beside exhaustive")
            rescore = gr.Number(0, precision=0, minimum=0, label="rescoring variant (pages, 0 = none)",
                                info="quantised views are scored on their codes; a depth adds a rescored variant "
                                     f"(off the frontier above {MAX_FRONTIER_RESCORE_SHARE:.0%} of the library)",
                                elem_id="lab-rescore")
        with gr.Column(scale=2) as own_inputs:
            queries = gr.Textbox(label="Queries, one per line", lines=5,
                                 placeholder="revenue by region in 2023\nwho signed the contract?",
                                 info="used together with a label file: these add fidelity, the file's add every metric")
            labels = gr.File(label="Label file (optional, .jsonl)", file_types=[".jsonl", ".json", ".txt"],
                             type="filepath", elem_id="lab-labels")
        with gr.Column(scale=2, visible=False) as benchmark_inputs:
            cap = benchmark_page_cap(engine.settings)
            dataset = gr.Textbox(label="ViDoRe dataset", placeholder="vidore/docvqa_test_subsampled",
                                 elem_id="lab-benchmark",
                                 info="a hub id (v1 QA or v2/v3 BEIR layout)"
                                      + (" or a folder saved with save_to_disk" if cap is None else ""))
            max_pages = gr.Number(min(20, cap or 20), precision=0, minimum=1, maximum=cap,
                                  label="max pages" + (f" (at most {cap} here)" if cap else " (empty: all)"),
                                  info="the first N pages and the queries they answer: a quick look, "
                                       "not comparable with published figures", elem_id="lab-max-pages")
    run = gr.Button("Run evaluation", variant="primary")
    run_benchmark = gr.Button("Run on the benchmark", variant="primary", visible=False, elem_id="lab-run-benchmark")
    summary = gr.Markdown()
    plot = gr.Plot(label="Retention vs memory", elem_id="lab-plot")
    table = gr.Dataframe(label="Results", headers=TABLE_COLUMNS, interactive=False, wrap=True, elem_id="lab-table")
    export = gr.File(label="Export (JSON, every figure)", interactive=False)

    def on_target(choice):
        on_library = choice != BENCHMARK
        return (gr.Column(visible=on_library), gr.Column(visible=not on_library), gr.Button(visible=on_library),
                gr.Button(visible=not on_library), gr.Checkbox(visible=on_library))

    @user_errors  # the call's session and mode (public-demo: the visitor's own library)
    def on_refresh():
        return gr.Dropdown(choices=view_choices(engine))

    @user_errors
    def on_run(view_list, use_sweep, query_text, labels_file, keep_views, rescore_depth=0, staged=False,
               progress=gr.Progress()):
        """Evaluate views against the full index: retention (with a label file) and fidelity.

        Args:
            view_list: view specs to evaluate.
            use_sweep: add the default sweep grid.
            query_text: queries, one per line (fidelity; combined with the label file's queries).
            labels_file: JSON-lines label file, or None.
            keep_views: keep the views computed for this run in the store.
            rescore_depth: > 0 adds a rescoring variant of every quantised view (0: none).
            staged: also search every float view in two stages (a row beside its exhaustive row).

        Returns:
            curve: the retention (or fidelity) vs memory figure.
            table: one row per view.
            export: every figure as a JSON file.
            summary: what was evaluated, as Markdown.
        """
        access.require("run evaluations (they save views)")
        try:
            figure, frame, path, text = run_lab(engine, view_list, use_sweep, query_text, labels_file,
                                                progress=lambda f, m: progress(f, desc=m), keep_views=keep_views,
                                                rescore=rescore_depth, two_stage=staged)
        except VdrError as error:
            raise gr.Error(str(error)) from error
        return figure, frame, path, text

    @user_errors
    def on_run_benchmark(dataset_id, page_count, view_list, use_sweep, rescore_depth=0, staged=False,
                         progress=gr.Progress()):
        """Evaluate views on a ViDoRe benchmark, indexed in a temporary library (yours is unchanged).

        Args:
            dataset_id: "vidore/<dataset>" (or, in local mode, a folder saved with save_to_disk).
            page_count: the first N pages and the queries they answer (capped outside local mode).
            view_list: view specs to evaluate.
            use_sweep: add the default sweep grid.
            rescore_depth: > 0 adds a rescoring variant of every quantised view (0: none).
            staged: also search every float view in two stages (a row beside its exhaustive row).

        Returns:
            curve: the retention vs memory figure.
            table: one row per view.
            export: every figure as a JSON file.
            summary: what was evaluated, as Markdown.
        """
        access.require("run evaluations")
        return run_lab_benchmark(engine, dataset_id, page_count, view_list, use_sweep,
                                 progress=lambda f, m: progress(f, desc=m), rescore=rescore_depth, two_stage=staged)

    target.change(on_target, inputs=target, outputs=[own_inputs, benchmark_inputs, run, run_benchmark, keep],
                  api_name="lab_target",
                  api_visibility="private", queue=False)
    run_benchmark.click(on_run_benchmark, inputs=[dataset, max_pages, views, sweep, rescore, two_stage],
                        outputs=[plot, table, export, summary], api_name="lab_benchmark", api_visibility="undocumented")
    refresh.click(on_refresh, outputs=views, api_name="lab_views", api_visibility="undocumented")
    run.click(on_run, inputs=[views, sweep, queries, labels, keep, rescore, two_stage], outputs=[plot, table, export, summary],
              api_name="lab_run", api_visibility="undocumented")
    return dict(views=views, sweep=sweep, keep=keep, rescore=rescore, two_stage=two_stage, refresh=refresh, queries=queries, labels=labels,
                run=run, target=target, dataset=dataset, max_pages=max_pages, run_benchmark=run_benchmark,
                summary=summary, plot=plot, table=table, export=export)

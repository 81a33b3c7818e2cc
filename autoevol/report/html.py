"""One self-contained HTML page: inline CSS, figures as inline SVG, no scripts, no external resources.

Every text that comes from data (methods, rule names, paths, model names) is HTML-escaped, in the
figures too.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from html import escape

from autoevol.report import plots
from autoevol.report.collect import OutputSummary, ReportModel, RunSummary, StepPoint
from autoevol.report.svg import Figure

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #1f4e79; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f4f8; }
svg.figure { max-width: 100%; height: auto; display: block; margin: .6em 0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .8em; white-space: pre-wrap;
      word-wrap: break-word; font-size: .85em; }
pre.diff span { display: block; }
.add { background: #e6ffec; color: #116329; }
.del { background: #ffebe9; color: #82071e; }
.hunk { color: #6f42c1; }
.meta { color: #666; font-size: .9em; }
"""


def _figure(figure: Figure | None, label: str) -> str:
    return "" if figure is None else figure.to_svg(label)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3f}"
    return str(value)


def diff_html(before: str, after: str, *, before_name: str = "e_0", after_name: str = "final") -> str:
    """A unified diff of two texts as escaped ``<pre>``, lines classed ``add``/``del``/``hunk``."""
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), before_name, after_name, lineterm=""))
    if not lines:
        return '<p class="meta">The final method is identical to e_0.</p>'
    out = []
    for line in lines:
        css = ""
        if line.startswith(("+++", "---")):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        out.append(f'<span class="{css}">{escape(line) or "&nbsp;"}</span>' if css else
                   f"<span>{escape(line) or '&nbsp;'}</span>")
    return '<pre class="diff">' + "".join(out) + "</pre>"


def _counts_table(counts: Mapping[str, int], name: str) -> str:
    return _table([name, "count"], [(k, v) for k, v in counts.items()])


def run_section(run: RunSummary) -> str:
    """The compile part: step plot, issue categories, final failures by rule, method and diff."""
    parts = ["<h2>Compile run</h2>", f'<p class="meta">{escape(run.path)}</p>']
    if run.settings:
        parts.append(_table(["setting", "value"], [(k, v) for k, v in run.settings.items()]))
    if run.steps:
        parts += ["<h2>Dev failure rate per step</h2>", _figure(plots.step_plot(run.steps), "failure rate per step"),
                  _table(["step", "incumbent", "candidates (d: a new demonstration set)", "selected", "winner",
                          "paired test"],
                         [(s.step, s.incumbent, _candidates(s), s.selected,
                           "incumbent kept" if s.winner is None else f"candidate {s.winner}", s.paired or "-")
                          for s in run.steps])]
    if run.confirmation is not None:
        held = run.confirmation
        parts.append(f"<p>Confirmation on {held.items} items no selection step measured: the start failed "
                     f"{held.reference_only + held.both}, the result {held.challenger_only + held.both} "
                     f"(p={held.p_value:.3g}, needed &lt;= {held.level:.3g}): "
                     f"{'the gain holds' if held.supported else 'the gain does not hold'}.</p>")
    if run.issue_categories:
        parts += ["<h2>Issue categories found by the trajectory analyses</h2>",
                  _figure(plots.bar_chart(run.issue_categories, title="issues by category", color="#9467bd"),
                          "issue categories"),
                  _counts_table(run.issue_categories, "category")]
    if run.final_by_rule:
        parts += ["<h2>Failures by rule (final method, dev set)</h2>",
                  _figure(plots.bar_chart(run.final_by_rule, title="dev failures by rule", color="#d62728"),
                          "dev failures by rule"),
                  _counts_table(run.final_by_rule, "rule")]
    if run.final_method:
        parts += ["<h2>Final method</h2>", f"<pre>{escape(run.final_method)}</pre>",
                  "<h2>Diff against e_0</h2>", diff_html(run.initial_method, run.final_method)]
    if run.final_demos or run.demos_found:
        found = ", ".join(f"{origin} {count}" for origin, count in run.demos_found.items()) or "none"
        parts += ["<h2>Final demonstrations</h2>", f'<p class="meta">found during the compile: {escape(found)}</p>',
                  _table(["instruction", "working notes", "evolved instruction", "from"],
                         [(d.get("instruction"), d.get("working_notes"), d.get("evolved_instruction"),
                           f"{d.get('origin')}, item {d.get('item_id')}, step {d.get('step')}")
                          for d in run.final_demos])]
    return "\n".join(parts)


def _candidates(step: StepPoint) -> str:
    kinds = step.kinds or ["method"] * len(step.candidates)
    return ", ".join(_cell(rate) + (" d" if kind == "demos" else "") for rate, kind in zip(step.candidates, kinds))


def output_section(output: OutputSummary) -> str:
    """The evolve-output part: rows per round, failures by rule, lengths, quality before and after."""
    parts = ["<h2>Evolved data</h2>", f'<p class="meta">{escape(output.path)} &middot; {output.rows} rows'
             + (f" &middot; models: {escape(', '.join(output.evol_models))}" if output.evol_models else "")
             + (f" &middot; methods: {escape(', '.join(output.method_fingerprints))}" if output.method_fingerprints
                else "") + "</p>"]
    if output.rounds:
        parts += ["<h2>Rows per round</h2>", _figure(plots.round_counts_plot(output.rounds), "rows per round"),
                  _table(["round", "rows", "failed", "failure rate"],
                         [(r.round, r.rows, r.failed, f"{r.failed / r.rows:.1%}" if r.rows else "-")
                          for r in output.rounds])]
    if output.by_rule:
        parts += ["<h2>Failures by rule</h2>",
                  _figure(plots.bar_chart(output.by_rule, title="failed rows by rule", color="#d62728"),
                          "failures by rule"),
                  _counts_table(output.by_rule, "rule")]
    lengths = plots.length_plot(output.rounds)
    if lengths is not None:
        parts += ["<h2>Length distributions</h2>", _figure(lengths, "length distributions")]
    quality = plots.quality_plot(output.rounds)
    if quality is not None:
        parts += ["<h2>Complexity and diversity, before and after, per round</h2>",
                  _figure(quality, "quality per round")]
        header = ["metric"]
        columns = []
        for r in output.rounds:
            if r.before is not None:
                header.append(f"round {r.round} before")
                columns.append(r.before.figures())
                header.append(f"round {r.round} after")
                columns.append(r.after.figures() if r.after else {})
        names = [n for n in columns[0] if any(c.get(n) is not None for c in columns)]
        parts.append(_table(header, [[n, *(c.get(n) for c in columns)] for n in names]))
    return "\n".join(parts)


def render(model: ReportModel) -> str:
    """The whole page."""
    body = [f"<h1>{escape(model.title)}</h1>", f'<p class="meta">source: {escape(model.source)}</p>']
    if model.run is not None:
        body.append(run_section(model.run))
    if model.output is not None:
        body.append(output_section(model.output))
    if model.run is None and model.output is None:
        body.append("<p>Nothing to report.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(model.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")

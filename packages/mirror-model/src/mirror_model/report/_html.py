"""One self-contained HTML report of a run or benchmark folder.

Everything is inline (CSS, figures as base64 PNG data URIs, tables as HTML), so the file opens
in a browser from disk, offline, and can be mailed or archived alone. Nothing is fetched:
no scripts, no fonts, no external links.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import numbers
import os
import re
import urllib.parse
from pathlib import Path

import pandas as pd

from mirror_genes.utils import OutputPathError, atomic_path, check_output, now_utc

from .. import constants as C
from .._errors import MirrorModelError, RunDirError
from ..constants import FOLD_METRICS_CSV, PREDICTIONS_CSV

REPORT_HTML = "report.html"
COMMANDS_TXT = "commands.txt"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_LIST_ITEMS = 20     # list values longer than this are cut in key-value tables
_MAX_KM = 4          # Kaplan-Meier figures drawn per predictions file

# (kind, rank in a folder section): the section reads top-down as commands, what ran, what it
# gave (tables), what it looks like (figures), then the rest
_KINDS = [(COMMANDS_TXT, "commands"), (C.RUN_MANIFEST, "json"), (C.RUN_CONFIG, "json"), ("*.md", "markdown"),
          (PREDICTIONS_CSV, "link"), ("*.csv", "table"), ("*.tsv", "table"), ("*.png", "figure"),
          (C.PAIRING_REPORT, "json"), ("*.json", "json")]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ccc;padding-bottom:2px;margin-top:40px}
h3{margin-top:24px;font-size:1.1em}h4,h5,h6{font-size:1em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.85em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef}tr:nth-child(even) td{background:#f8f8f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f4f4f4;padding:8px;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
figure{margin:12px 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555}
.note{color:#666;font-size:.85em}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    """Cell text: floats to 4 significant digits, missing values empty."""
    if value is None or (_is_number(value) and value != value):
        return ""
    if _is_number(value) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return str(value)


def _is_number(value) -> bool:
    """Real numbers, numpy scalars included, but not booleans."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _table(header, rows) -> str:
    """An HTML table with a header row; a note instead when there is no row (never an empty table)."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [_fmt(v) for v in row]
        body.append("<tr>" + "".join(
            f'<td class="num">{_esc(c)}</td>' if _is_number(v)
            else f"<td>{_esc(c)}</td>" for v, c in zip(row, cells, strict=False)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _href(path: Path, out: Path) -> str:
    """Relative link from the report to a file beside it (never an absolute or external URL)."""
    rel = os.path.relpath(path, out.parent).replace(os.sep, "/")
    return urllib.parse.quote(rel)


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _inline(text: str) -> str:
    """Escaped markdown inline text: `code` and **bold**; links keep their text only."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    out = _esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    """A markdown table's header separator (``|---|:--:|``)."""
    s = line.strip()
    return bool(s) and "-" in s and set(s) <= set("|-: ")


def _markdown(text: str) -> str:
    """The markdown subset our summaries use: headings, pipe tables, code fences, lists, paragraphs."""
    out, para, lines, i = [], [], text.splitlines(), 0

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if line.startswith("```"):
            flush()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append(f"<pre>{_esc(chr(10).join(lines[i + 1:end]))}</pre>")
            i = end + 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            flush()
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].lstrip().startswith("|")), len(lines))
            out.append(_table(_cells(line), [_cells(r) for r in lines[i + 2:end]]))
            i = end
            continue
        if heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)   # the page and folder headings are h1, h2
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith(("- ", "* ")):
            flush()
            out.append(f"<ul><li>{_inline(line.lstrip()[2:])}</li></ul>")
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out).replace("</ul>\n<ul>", "\n")


def _value_text(value) -> str:
    """A JSON value as one cell: long lists are cut (with their length), nested ones as JSON."""
    if isinstance(value, list):
        items = [v if isinstance(v, str) else json.dumps(v) for v in value[:_LIST_ITEMS]]
        more = f" ... ({len(value)} items)" if len(value) > _LIST_ITEMS else ""
        return ", ".join(items) + more if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "null" if value is None else str(value)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, _value_text(value)))
    return rows


def _json_html(data) -> str:
    """Top-level scalars in one key-value table, then one titled table per nested object
    (so a manifest's ``versions`` and ``data`` fingerprints each get their own)."""
    if not isinstance(data, dict):
        return f"<pre>{_esc(json.dumps(data, indent=2)[:20000])}</pre>"
    flat = [(k, _value_text(v)) for k, v in data.items() if not (isinstance(v, dict) and v)]
    parts = [_table(["key", "value"], flat)] if flat else []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            parts.append(f"<h4>{_esc(key)}</h4>" + _table(["key", "value"], _flatten(value)))
    return "\n".join(parts)


def _kind(path: Path) -> tuple[int, str] | None:
    """(rank, kind) of a file the report shows, None for other files."""
    for rank, (pattern, kind) in enumerate(_KINDS):
        if path.name == pattern or (pattern.startswith("*") and path.name.endswith(pattern[1:])):
            return rank, kind
    return None


def _collect(root: Path, out: Path) -> dict[Path, tuple[list, list]]:
    """{folder relative to root: (shown files as (rank, kind, path), other files)} in walk order.

    Folders are visited root first, then depth-first in sorted name order, and files are sorted
    within a folder: the same folder always gives the same report. Hidden entries are skipped
    (atomic writes in progress are hidden temporary files).
    """
    groups = {}
    target = out.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        shown, other = [], []
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.resolve() == target or not path.is_file():
                continue
            kind = _kind(path)
            if kind is None:
                other.append(path)
            else:
                shown.append((*kind, path))
        if shown or other:
            groups[Path(dirpath).relative_to(root)] = (sorted(shown, key=lambda e: (e[0], e[2].name)), other)
    return groups


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return RunDirError(f"{path.name}: unreadable JSON ({str(err).splitlines()[0]})")


def _commands(shown: list) -> list[str]:
    """The exact commands: ``commands.txt`` lines, then ``command``(s) recorded in run/config JSON."""
    found = []
    for _, kind, path in shown:
        if kind == "commands":
            found += [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        elif path.name in (C.RUN_MANIFEST, C.RUN_CONFIG):
            data = _read_json(path)
            if isinstance(data, dict):
                for key in ("command", "commands"):
                    value = data.get(key)
                    found += value if isinstance(value, list) else [value] if value else []
    return list(dict.fromkeys(str(c) for c in found))


def _csv_table(path: Path, out: Path, max_rows: int) -> str:
    try:
        # only the shown rows are parsed: a large table costs a line count, not a full parse
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", nrows=max_rows + 1)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        return f'<p class="note">unreadable table ({_esc(str(err).splitlines()[0])})</p>'
    note = ""
    if len(frame) > max_rows:
        note = (f'<p class="note">first {max_rows} of {_count_rows(path)} rows; full table: '
                f'<a href="{_href(path, out)}">{_esc(path.name)}</a></p>')
    rows = [[None if pd.isna(v) else v for v in row] for row in frame.head(max_rows).itertuples(index=False)]
    return note + _table(list(frame.columns), rows)


def _count_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return max(sum(1 for _ in csv.reader(fh)) - 1, 0)


def _render_file(kind: str, path: Path, out: Path, max_rows: int) -> str:
    """HTML of one shown file (figures and commands are gathered by the section instead)."""
    head = f"<h3>{_esc(path.name)}</h3>"
    if kind == "json":
        data = _read_json(path)
        body = f'<p class="note">{_esc(data)}</p>' if isinstance(data, Exception) else _json_html(data)
        return head + body
    if kind == "markdown":
        return head + _markdown(path.read_text(encoding="utf-8", errors="replace"))
    if kind == "table":
        return head + _csv_table(path, out, max_rows)
    if kind == "link":
        return (f'{head}<p><a href="{_href(path, out)}">{_esc(path.name)}</a>: {_count_rows(path)} rows '
                "(one per held-out patient and run; not shown here)</p>")
    return ""


def _figure_file(path: Path, root: Path) -> str:
    data = path.read_bytes()
    caption = path.relative_to(root).as_posix()
    if not data.startswith(PNG_MAGIC):
        return f'<p class="note">{_esc(caption)}: not a PNG file, skipped</p>'
    return _img(data, caption)


def _probe_figures(path: Path, rel: str) -> list[str]:
    from ..pl import plot_probe_metrics

    metrics = pd.read_csv(path)
    present = set(metrics["metric"])
    return [_img(_png_bytes(plot_probe_metrics(metrics, m)), f"{m} per fold, drawn from {rel}")
            for m in ("accuracy", "macro_f1", "auc", "c_index") if m in present]


def _km_figures(path: Path, rel: str) -> list[str]:
    """Kaplan-Meier curves of the first survival runs trained on whole folds (few-shot repeats
    would give one figure per seed)."""
    from ..eval import read_predictions
    from ..pl import plot_kaplan_meier

    preds = read_predictions(path)
    surv = preds[(preds["task"] == "survival") & ~preds["protocol"].astype(str).str.contains("shot")]
    keys = ["method", "protocol", "modalities", "seed"]
    out = []
    for (method, protocol, modalities, seed), part in list(surv.groupby(keys, sort=False))[:_MAX_KM]:
        fig = plot_kaplan_meier(part, method=method, protocol=protocol, seed=seed)
        out.append(_img(_png_bytes(fig), f"Kaplan-Meier, {method} {protocol} ({modalities}), drawn from {rel}"))
    return out


def _derived_figures(shown: list, root: Path) -> list[str]:
    """Figures drawn from the tables found: training curves, probe metrics, Kaplan-Meier."""
    from ..pl import training_curves

    out = []
    for _, _, path in shown:
        rel = path.relative_to(root).as_posix()
        try:
            if path.name == C.METRICS_CSV:
                out.append(_img(_png_bytes(training_curves(path)), f"training curves, drawn from {rel}"))
            elif path.name == FOLD_METRICS_CSV:
                out += _probe_figures(path, rel)
            elif path.name == PREDICTIONS_CSV:
                out += _km_figures(path, rel)
        except (MirrorModelError, KeyError, ValueError, OSError, pd.errors.ParserError) as err:
            # a table that cannot be drawn still appears as a table; say why it has no figure
            out.append(f'<p class="note">no figure from {_esc(rel)}: {_esc(str(err).splitlines()[0])}</p>')
    return out


def _size(path: Path) -> str:
    n = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _folder_title(rel: Path, root: Path) -> str:
    return f"{root.resolve().name} (top folder)" if rel == Path(".") else rel.as_posix()


def _section(index: int, rel: Path, shown: list, other: list, root: Path, out: Path, max_rows: int) -> str:
    """One folder: commands, JSON records, markdown, tables, figures, then the other files' names."""
    parts = [f'<section><h2 id="sec-{index}">{_esc(_folder_title(rel, root))}</h2>']
    commands = _commands(shown)
    if commands:
        parts.append(f"<h3>Commands</h3><pre>{_esc(chr(10).join(commands))}</pre>")
    parts += [_render_file(kind, path, out, max_rows) for _, kind, path in shown
              if kind not in ("figure", "commands")]
    figures = [_figure_file(path, root) for _, kind, path in shown if kind == "figure"]
    figures += _derived_figures(shown, root)
    if figures:
        parts.append("<h3>Figures</h3>" + "\n".join(figures))
    if other:
        listed = ", ".join(f"{_esc(p.name)} ({_size(p)})" for p in other[:50])
        more = f" ... and {len(other) - 50} more" if len(other) > 50 else ""
        parts.append(f'<p class="note">Other files: {listed}{more}</p>')
    return "\n".join(parts) + "</section>"


def _page(title: str, root: Path, sections: list[tuple[str, str]]) -> str:
    from .. import __version__

    toc = "".join(f'<li><a href="#sec-{i}">{_esc(name)}</a></li>' for i, (name, _) in enumerate(sections))
    # the policy forbids every load except inline styles and data: images: a proof of self-containment
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">Folder {_esc(root.resolve())}; report written {_esc(now_utc())} by mirror-model '
        f"{_esc(__version__)}.</p>",
        f"<nav><h2>Contents</h2><ul>{toc}</ul></nav>",
        *(body for _, body in sections), "</body></html>", ""])


def write_report(run_or_benchmark_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 title: str | None = None, max_rows: int = 200) -> Path:
    """Write one self-contained HTML report of a run or benchmark folder.

    Parameters
    ----------
    run_or_benchmark_dir
        Folder to report on; walked recursively (hidden entries skipped).
    out
        Report file, ending in ``.html``; None: ``report.html`` in the folder. An existing
        file there is replaced (it is left out of the report itself).
    title
        Page title; None: the folder's name.
    max_rows
        Rows shown per CSV table (the rest linked).

    Returns
    -------
    The report's path. One section per folder (root first, then sorted, depth first) with:
    the exact commands (``commands.txt``, ``command`` in ``run.json``/``config.json``);
    ``run.json``, ``config.json``, ``pairing.json`` and other JSON as key-value tables (versions
    and data fingerprints included); markdown (``summary.md``) rendered; CSV/TSV tables;
    ``predictions.csv`` as a link with its row count; every PNG embedded as a base64 data
    URI, plus figures drawn from ``metrics.csv`` (training curves), ``metrics_per_fold.csv``
    (probe metrics) and ``predictions.csv`` (Kaplan-Meier); other files by name and size.
    Nothing in the page is loaded from elsewhere (no scripts, fonts or external URLs).
    """
    root = Path(run_or_benchmark_dir)
    if not root.is_dir():
        raise RunDirError(f"{root}: not a folder; give a run or benchmark folder to report on")
    out = root / REPORT_HTML if out is None else Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        # the report replaces what is at ``out``: never let a typo clobber a table or a checkpoint
        raise OutputPathError(out, "the report is HTML: give a file name ending in .html")
    groups = _collect(root, out)
    if not groups:
        raise RunDirError(f"{root}: nothing to report (the folder holds no visible file)")
    inputs = [e[2] for shown, _ in groups.values() for e in shown] + [p for _, o in groups.values() for p in o]
    check_output(out, inputs=inputs, force=True)   # before the work: a folder in the way, or no write access
    sections = [(_folder_title(rel, root), _section(i, rel, shown, other, root, out, max_rows))
                for i, (rel, (shown, other)) in enumerate(groups.items())]
    with atomic_path(out) as tmp:
        tmp.write_text(_page(title or root.resolve().name, root, sections), encoding="utf-8")
    return out

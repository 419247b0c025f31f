"""Gene panels: the refined feature list of one project, portable to others as GMT/TSV/JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._errors import InputFileError, PanelError
from .._provenance import file_record
from ..io._open import check_readable

FORMATS = ("gmt", "tsv", "json")
JSON_FORMAT_TAG = "mirror-genes-panel"
JSON_FORMAT_VERSION = 1
TSV_COLUMNS = ("source", "target", "weight", "gene_symbol")
_WS_RE = re.compile(r"\s")


def _plain(value):
    """``value`` as plain JSON types (numpy scalars/arrays, tuples, sets and paths converted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PanelError(f"panel provenance holds a non-finite number ({value}); JSON cannot store it")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise PanelError(f"panel provenance holds a {type(value).__name__}; use plain JSON types")


@dataclass(frozen=True)
class Panel:
    """A named, ordered list of features with their gene symbols, weights and provenance.

    Parameters
    ----------
    name
        Panel name: non-empty, no whitespace (GMT readers split on it).
    features
        Feature IDs in the panel's order (HUGO symbols, versioned Ensembl gene IDs or
        transcript IDs, as in the ``var_names`` of the data the panel was built on). Unique.
    gene_symbols
        HUGO symbol of each feature, aligned with ``features`` (``""`` where unknown).
        Default: the features themselves (right for symbol-keyed data).
    weights
        One finite weight per feature. Default: ``1.0`` each.
    provenance
        Free-form record (input files and checksums, parameters, CV curve, versions, ...),
        converted to plain JSON types on construction.
    """

    name: str
    features: tuple[str, ...]
    gene_symbols: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = str(self.name).strip()
        if not name or _WS_RE.search(name):
            raise PanelError(f"panel name {self.name!r} must be non-empty and hold no whitespace")
        features = tuple(str(f).strip() for f in self.features)
        if not features:
            raise PanelError(f"panel {name!r} has no features")
        bad = [f for f in features if not f or _WS_RE.search(f)]
        if bad:
            raise PanelError(f"panel {name!r}: feature ID {bad[0]!r} is empty or holds whitespace")
        seen: set[str] = set()
        dup = [f for f in features if f in seen or seen.add(f)]
        if dup:
            raise PanelError(f"panel {name!r}: feature {dup[0]!r} appears twice")
        symbols = features if self.gene_symbols is None else tuple(
            "" if s is None else str(s).strip() for s in self.gene_symbols)
        if len(symbols) != len(features):
            raise PanelError(f"panel {name!r}: {len(symbols)} gene symbols for {len(features)} features")
        bad = [s for s in symbols if _WS_RE.search(s)]
        if bad:
            raise PanelError(f"panel {name!r}: gene symbol {bad[0]!r} holds whitespace")
        if self.weights is None:
            weights = (1.0,) * len(features)
        else:
            try:
                weights = tuple(float(w) for w in self.weights)
            except (TypeError, ValueError):
                raise PanelError(f"panel {name!r}: weights must be numbers") from None
        if len(weights) != len(features):
            raise PanelError(f"panel {name!r}: {len(weights)} weights for {len(features)} features")
        if not all(math.isfinite(w) for w in weights):
            raise PanelError(f"panel {name!r}: weights must be finite")
        provenance = _plain(dict(self.provenance or {}))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "gene_symbols", symbols)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "provenance", provenance)

    def __len__(self) -> int:
        return len(self.features)

    def __hash__(self) -> int:  # provenance (a dict) is left out: it cannot be hashed
        return hash((self.name, self.features, self.gene_symbols, self.weights))

    @property
    def genes(self) -> tuple[str, ...]:
        """Gene symbols, deduplicated in panel order; a feature without symbol gives its ID."""
        return tuple(dict.fromkeys(s or f for f, s in zip(self.features, self.gene_symbols)))

    @property
    def description(self) -> str:
        """Short one-token description for GMT (``mirror-genes:<cohort>`` when known)."""
        prov = self.provenance
        text = prov.get("description") if isinstance(prov.get("description"), str) else ""
        if not text:
            params = prov.get("params") if isinstance(prov.get("params"), dict) else {}
            cohort = prov.get("cohort") or params.get("cohort")
            text = f"mirror-genes:{cohort}" if cohort else f"mirror-genes:{self.name}"
        return _WS_RE.sub("_", text.strip()) or f"mirror-genes:{self.name}"

    def to_dict(self) -> dict:
        """The JSON document written by ``save(..., format="json")``."""
        return {
            "format": JSON_FORMAT_TAG,
            "format_version": JSON_FORMAT_VERSION,
            "name": self.name,
            "features": list(self.features),
            "gene_symbols": list(self.gene_symbols),
            "weights": list(self.weights),
            "provenance": self.provenance,
        }


# --------------------------------------------------------------------------------------------
# writing

def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        key = str(fmt).lower().lstrip(".")
        if key not in FORMATS:
            raise PanelError(f"unknown panel format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return key
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise PanelError(
        f"{path}: cannot tell the panel format from the suffix {path.suffix!r}; use .gmt, .tsv "
        "or .json, or pass format=")


def _gmt_text(panel: Panel) -> str:
    genes = panel.genes
    lost = []
    if len(genes) < len(panel.features):
        lost.append(f"{len(panel.features)} features -> {len(genes)} gene symbols")
    if any(w != 1.0 for w in panel.weights):
        lost.append("weights dropped")
    if lost:
        warnings.warn(f"panel {panel.name!r} saved as GMT: {'; '.join(lost)} (use .json to keep "
                      "features, weights and provenance)", UserWarning, stacklevel=3)
    return "\t".join((panel.name, panel.description, *genes)) + "\n"


def _tsv_text(panel: Panel) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    for f, s, w in zip(panel.features, panel.gene_symbols, panel.weights):
        writer.writerow((panel.name, f, repr(w), s))
    return buf.getvalue()


def _json_text(panel: Panel) -> str:
    return json.dumps(panel.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


_WRITERS = {"gmt": _gmt_text, "tsv": _tsv_text, "json": _json_text}


def save(panel: Panel, path: str | os.PathLike, *, format: str | None = None) -> Path:
    """Write a panel atomically (a failure leaves no partial file and keeps an old one).

    Formats:

    - ``gmt``: one line ``name<TAB>description<TAB>symbol1<TAB>symbol2...``; gene symbols,
      deduplicated in panel order (a feature without symbol gives its ID). Features, weights
      and provenance are lost; a warning says so when it matters.
    - ``tsv``: decoupler network layout, header ``source target weight gene_symbol``;
      ``source`` = panel name, ``target`` = feature ID (exactly the panel's features),
      ``gene_symbol`` an extra column. Provenance is lost.
    - ``json``: everything, provenance included.

    Parameters
    ----------
    panel
        The panel.
    path
        Destination; parent folders are created.
    format
        ``"gmt"``, ``"tsv"`` or ``"json"``; default from the suffix of ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be a Panel, not {type(panel).__name__}")
    target = Path(path)
    fmt = _format_of(target, format)
    text = _WRITERS[fmt](panel)
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    return target


# --------------------------------------------------------------------------------------------
# reading

def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text (binary file?)") from None
    except OSError as err:
        raise InputFileError(path, f"cannot be read ({err.strerror or err})") from None


def _sniff(path: Path, text: str) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "json"
    first = stripped.splitlines()[0] if stripped else ""
    if first.split("\t")[:2] == ["source", "target"]:
        return "tsv"
    return "gmt"


def _loaded_provenance(path: Path, fmt: str, **extra) -> dict:
    record = file_record(path, "panel")
    return {"loaded_from": record, "format": fmt,
            "note": f"{fmt.upper()} files carry no provenance; the original record is lost",
            **extra}


def _pick(path: Path, names: list[str], set_name: str | None, what: str) -> str:
    if set_name is not None:
        if set_name not in names:
            raise PanelError(f"{path}: no {what} named {set_name!r}; it holds {', '.join(names[:10])}")
        return set_name
    if len(names) > 1:
        raise PanelError(
            f"{path}: holds {len(names)} {what}s ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
            "pass set_name= to pick one")
    return names[0]


def _load_gmt(path: Path, text: str, set_name: str | None) -> Panel:
    sets: dict[str, tuple[str, list[str]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.rstrip("\r\n").split("\t")]
        if len(cells) < 3:
            raise PanelError(f"{path}: line {lineno} is not GMT (need name<TAB>description<TAB>genes...)")
        name, description, genes = cells[0], cells[1], [g for g in cells[2:] if g]
        if not name or not genes:
            raise PanelError(f"{path}: line {lineno} has an empty set name or no genes")
        if name in sets:
            raise PanelError(f"{path}: gene set {name!r} appears twice (line {lineno})")
        sets[name] = (description, list(dict.fromkeys(genes)))
    if not sets:
        raise PanelError(f"{path}: no gene set found (empty GMT)")
    chosen = _pick(path, list(sets), set_name, "gene set")
    description, genes = sets[chosen]
    try:
        return Panel(chosen, tuple(genes), tuple(genes),
                     provenance=_loaded_provenance(path, "gmt", description=description))
    except PanelError as err:
        raise PanelError(f"{path}: {err}") from None


def _load_tsv(path: Path, text: str, set_name: str | None) -> Panel:
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise PanelError(f"{path}: empty panel TSV")
    header = [c.strip() for c in rows[0]]
    missing = [c for c in ("source", "target") if c not in header]
    if missing:
        raise PanelError(f"{path}: not a panel TSV: missing column(s) {', '.join(missing)} "
                         f"(header is {header[:6]!r}; expected source, target[, weight, gene_symbol])")
    col = {c: header.index(c) for c in TSV_COLUMNS if c in header}
    records: dict[str, list[tuple[str, str, str, int]]] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        row = row + [""] * (len(header) - len(row))
        get = lambda c: row[col[c]].strip() if c in col else ""  # noqa: E731, B023 (used in this iteration only)
        if not get("source") or not get("target"):
            raise PanelError(f"{path}: line {lineno} has an empty source or target")
        records.setdefault(get("source"), []).append((get("target"), get("gene_symbol"), get("weight"), lineno))
    chosen = _pick(path, list(records), set_name, "source")
    features, symbols, weights = [], [], []
    for target, symbol, weight, lineno in records[chosen]:
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise PanelError(f"{path}: line {lineno}: weight {weight!r} is not a number") from None
        features.append(target)
        symbols.append(symbol if "gene_symbol" in col else target)
        weights.append(w)
    try:
        return Panel(chosen, tuple(features), tuple(symbols), tuple(weights),
                     provenance=_loaded_provenance(path, "tsv"))
    except PanelError as err:
        raise PanelError(f"{path}: {err}") from None


def _load_json(path: Path, text: str, set_name: str | None) -> Panel:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PanelError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT_TAG:
        raise PanelError(f"{path}: not a mirror-genes panel JSON (no \"format\": \"{JSON_FORMAT_TAG}\")")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > JSON_FORMAT_VERSION:
        raise PanelError(f"{path}: panel format_version {version!r} is newer than this "
                         f"mirror-genes reads ({JSON_FORMAT_VERSION}); upgrade mirror-genes")
    missing = [k for k in ("name", "features") if k not in doc]
    if missing:
        raise PanelError(f"{path}: panel JSON lacks {', '.join(missing)}")
    if set_name is not None and set_name != doc["name"]:
        raise PanelError(f"{path}: holds panel {doc['name']!r}, not {set_name!r}")
    for key in ("features", "gene_symbols", "weights"):
        if key in doc and doc[key] is not None and not isinstance(doc[key], list):
            raise PanelError(f"{path}: {key!r} must be a list")
    if not isinstance(doc.get("provenance", {}), dict):
        raise PanelError(f"{path}: 'provenance' must be an object")
    try:
        return Panel(doc["name"], tuple(doc["features"]),
                     None if doc.get("gene_symbols") is None else tuple(doc["gene_symbols"]),
                     None if doc.get("weights") is None else tuple(doc["weights"]),
                     provenance=doc.get("provenance") or {})
    except PanelError as err:
        raise PanelError(f"{path}: {err}") from None


_READERS = {"gmt": _load_gmt, "tsv": _load_tsv, "json": _load_json}


def packaged_panel_dir() -> Path:
    """Folder of the panels shipped with the package (``mirror_genes/panels/data``)."""
    return Path(str(resources.files("mirror_genes.panels"))) / "data"


def packaged_panels() -> list[str]:
    """Names of the panels shipped with the package (none yet)."""
    folder = packaged_panel_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _is_bare_name(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_\-]+", text))


def load(name_or_path: str | os.PathLike, *, set_name: str | None = None) -> Panel:
    """Read a panel from a file, or a panel shipped with the package by its name.

    Parameters
    ----------
    name_or_path
        Path of a ``.gmt``, ``.tsv`` or ``.json`` panel (other suffixes are sniffed from the
        content), or a bare name ``<name>`` (letters, digits, ``_``, ``-``) that is not an
        existing file: it resolves to ``mirror_genes/panels/data/<name>.json``.
    set_name
        For GMT/TSV files with several sets (sources), the one to load.

    Returns
    -------
    Panel
        From GMT: features = gene symbols, weights 1.0. From TSV: features = targets.
        Neither keeps the original provenance; the loaded panel's provenance records the
        file read (path, sha256) instead. JSON restores the panel exactly.

    Raises
    ------
    PanelError
        Malformed panel file, several sets without ``set_name``, or an unknown bare name (the
        message lists where it looked).
    InputFileError
        A path that does not exist, is empty or cannot be read.
    """
    text_arg = os.fspath(name_or_path)
    path = Path(text_arg)
    if not path.exists() and isinstance(name_or_path, str) and _is_bare_name(text_arg):
        shipped = packaged_panel_dir() / f"{text_arg}.json"
        if shipped.is_file():
            path = shipped
        else:
            known = packaged_panels()
            raise PanelError(
                f"panel {text_arg!r} not found: no file {str(Path.cwd() / text_arg)!r} and no "
                f"packaged panel {str(shipped)!r} (packaged panels: {', '.join(known) or 'none'})")
    path = check_readable(path)
    text = _read_text(path)
    if not text.strip():
        raise InputFileError(path, "file is empty")
    return _READERS[_sniff(path, text)](path, text, set_name)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, format: str | None = None) -> Path:
    """Convert a panel file between formats (``load`` then ``save``; see their notes on loss).

    Parameters
    ----------
    src
        Panel path or packaged panel name.
    dst
        Destination path; its suffix gives the format unless ``format`` is passed.
    format
        ``"gmt"``, ``"tsv"`` or ``"json"``.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    return save(load(src), dst, format=format)

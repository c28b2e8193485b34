"""Sphinx extension of the meas_realbogus documentation: pages generated from code and data.

Everything here is rendered at build time, so that the documentation cannot drift from the
code or the shipped models:

``.. rb-task-config:: module.TaskClass``
    Table of the task's pex_config fields (name, type, default, allowed values, doc).
``.. rb-task-connections:: module.TaskClass``
    Table of the task's Butler connections (kind, dataset type, storage class, dimensions).
``.. rb-optional-toctree::``
    A toctree (same options as ``toctree``) whose entries that are not documents of this
    build (a task page whose module does not exist yet, a page another author has not
    written yet) are left out with an *info* message, never a warning.  Entries may be
    ``fnmatch`` patterns.
``.. rb-model-card:: path/to/model.safetensors``
    Model card from the package metadata (`lsst.meas.realbogus.model_package.read_model_package`)
    and an optional JSON side file ``<stem>.json`` (held-out evaluation).
``.. rb-bench:: path/to/bench_speed.json``
    Performance tables from the JSON written by ``bench/bench_speed.py --json``.

At ``config-inited`` one page per model package found in ``realbogus_model_dirs`` is written
to ``models/generated/`` (git-ignored), and task topic pages whose task module cannot be found
are excluded from the build.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.nodes import nested_parse_with_titles

LOG = logging.getLogger(__name__)

# Task topic pages (doc/lsst.meas.realbogus/tasks/<page>.rst) and the module each documents.
TASK_PAGES: dict[str, str] = {
    "SubtractImagesTask": "lsst.meas.realbogus.tasks.subtract_images",
    "DetectDiaSourcesTask": "lsst.meas.realbogus.tasks.detect_dia_sources",
    "MatchTruthTask": "lsst.meas.realbogus.tasks.match_truth",
    "RBTransiNetTask": "lsst.meas.realbogus.tasks.rb_transinet",
    "FilterDiaSourceReliabilityTask": "lsst.meas.realbogus.tasks.filter_reliability",
    "RealBogusTrainTask": "lsst.meas.realbogus.tasks.train_realbogus",
    "TransiNetDetectTask": "lsst.meas.realbogus.tasks.transinet_detect",
}
TASK_DIR = "lsst.meas.realbogus/tasks"
MODEL_PAGE_DIR = "lsst.meas.realbogus/models/generated"

# Known limits of the shipped models (by file stem); written by hand, shown on the model card.
KNOWN_LIMITS: dict[str, str] = {
    "default_model": (
        "Trained and evaluated on the package's **simulated** LSST-like survey only "
        "(`lsst.meas.realbogus.simulation`): the artefact population (cosmic rays, hot pixels, "
        "bad columns, bleed and satellite trails, misregistration, PSF-matching residuals, "
        "NaN regions, edges) and the transient population are those of the simulator, not of "
        "LSSTCam.  Its scores are calibrated on simulated validation visits; on real data the "
        "threshold and calibration must be re-derived (``RealBogusTrainTask`` on labelled real "
        "candidates) before they are trusted.  The model sees 3-channel stamps in nJy with the "
        "normalisation declared in the package; stamps in other units are fine only because "
        "the normalisation is scale-invariant (robust noise per stamp)."
    ),
    "transinet_default": (
        "A deliberately **small** end-to-end TransiNet (U-Net on template and science, no "
        "difference image) trained on the package's simulated survey only; its metrics below are "
        "measured on simulated detectors, and its comparison with the difference-image path is "
        "on the TransiNet page.  It is a segmentation model (``kind: segmentation``): it is used "
        "by ``TransiNetDetectTask`` and cannot be loaded by ``RBTransiNetTask`` or "
        "`lsst.meas.realbogus.load_model`, which need a classifier."
    ),
}
GENERIC_LIMITS = (
    "No hand-written limits are recorded for this model.  Unless its provenance below says "
    "otherwise, assume it was trained on simulated data only and re-derive the threshold on "
    "the data it is applied to."
)


# --------------------------------------------------------------------------------------
# rst helpers
# --------------------------------------------------------------------------------------

_RST_SPECIAL = re.compile(r"([\\`*_|])")


def esc(value: Any) -> str:
    """Escape text for an rst table cell (one line)."""
    text = " ".join(str(value).split())
    return _RST_SPECIAL.sub(r"\\\1", text)


_DOC_TOKENS = re.compile(r"(``[^`]+``|`[^`]+`)")


def doc_text(value: Any) -> str:
    """Render docstring text for a table cell: ````literals```` are kept, ```references``` become
    literals (no cross-reference can fail), everything else is escaped.
    """
    text = " ".join(str(value).split())
    out = []
    for token in _DOC_TOKENS.split(text):
        if token.startswith("``") and token.endswith("``") and len(token) > 4:
            piece = token
        elif token.startswith("`") and token.endswith("`") and len(token) > 2:
            piece = "``" + token.strip("`").lstrip("~") + "``"
        else:
            piece = _RST_SPECIAL.sub(r"\\\1", token)
            # Inline markup must be separated from surrounding word characters.
            if out and piece[:1].isalnum():
                piece = "\\ " + piece
        if piece.startswith("``") and out and out[-1][-1:].isalnum():
            piece = "\\ " + piece
        out.append(piece)
    return "".join(out)


def lit(value: Any) -> str:
    """Inline literal."""
    text = " ".join(str(value).split())
    if not text:
        return ""
    return f"``{text}``" if "``" not in text else esc(text)


def fmt_num(value: Any, digits: int = 4) -> str:
    """Format a JSON number for a table."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return esc(value)


def list_table(header: list[str], rows: list[list[str]], title: str = "", widths: str = "") -> list[str]:
    """Return the lines of a ``list-table`` (cells already rst)."""
    lines = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            prefix = "   * - " if i == 0 else "     - "
            lines.append(prefix + (cell if cell else ""))
    lines.append("")
    return lines


def heading(text: str, char: str) -> list[str]:
    """Return the lines of a section title."""
    return [text, char * max(len(text), 3), ""]


class RstDirective(Directive):
    """A directive that renders rst text and parses it in place."""

    has_content = False
    required_arguments = 0
    optional_arguments = 1
    final_argument_whitespace = True

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        """Parse the rendered lines and return their nodes."""
        # Generated content depends on code, data and the set of documents: re-read the page
        # on every build, also incremental ones.
        self.state.document.settings.env.note_reread()
        lines = self.render()
        container = nodes.container()
        source = self.state.document.current_source or ""
        nested_parse_with_titles(self.state, StringList(lines, source=f"{source}:<{self.name}>"), container)
        return container.children


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------


def import_object(path: str) -> Any:
    """Import ``module.attribute`` given its dotted path."""
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _field_type(field: Any) -> str:
    kind = type(field).__name__
    dtype = getattr(field, "dtype", None)
    if kind in ("ListField",):
        item = getattr(field, "itemtype", None)
        return f"list [{getattr(item, '__name__', item)}]"
    if kind in ("DictField",):
        k, v = getattr(field, "keytype", None), getattr(field, "itemtype", None)
        return f"dict [{getattr(k, '__name__', k)}, {getattr(v, '__name__', v)}]"
    if kind in ("ConfigField", "ConfigurableField", "ConfigChoiceField", "RegistryField"):
        return kind
    name = getattr(dtype, "__name__", str(dtype))
    return name if kind == "Field" else f"{name} ({kind})"


def _field_default(field: Any) -> str:
    kind = type(field).__name__
    if kind in ("ConfigField", "ConfigurableField"):
        target = getattr(field, "target", None) or getattr(field, "dtype", None)
        return lit(getattr(target, "__name__", target)) if target is not None else ""
    default = getattr(field, "default", None)
    if hasattr(default, "__iter__") and not isinstance(default, str | dict):
        try:
            default = list(default)
        except TypeError:
            pass
    return lit(repr(default))


class TaskConfigDirective(RstDirective):
    """``.. rb-task-config:: module.TaskClass``"""

    required_arguments = 1
    optional_arguments = 0

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        path = self.arguments[0]
        try:
            task = import_object(path)
            config_class = task.ConfigClass
        except Exception as err:  # noqa: BLE001 - any import failure is reported, not raised
            LOG.info("rb-task-config: %s not importable (%s); rendering a note", path, err)
            return [".. note::", "", f"   ``{path}`` could not be imported when this page was built.", ""]
        rows = []
        for name, field in config_class._fields.items():
            if name == "connections":
                continue
            doc = doc_text(getattr(field, "doc", "") or "")
            allowed = getattr(field, "allowed", None)
            if allowed:
                choices = "; ".join(
                    f"{lit(repr(k))}: {doc_text(str(v).rstrip('.'))}"
                    for k, v in allowed.items()
                    if k is not None
                )
                doc = f"{doc} Allowed: {choices}."
            if getattr(field, "optional", False):
                doc = f"{doc} *Optional.*"
            rows.append([lit(name), esc(_field_type(field)), _field_default(field), doc])
        lines = list_table(["Field", "Type", "Default", "Description"], rows, widths="18 12 15 55")
        lines += [
            "The ``connections`` field (the dataset type names of the connections above) is omitted.  "
            "Override fields in a pipeline YAML ``config:`` block or with "
            "``pipetask run -c <label>:FIELD=VALUE``.",
            "",
        ]
        return lines


_CONNECTION_KINDS = ("initInputs", "initOutputs", "inputs", "prerequisiteInputs", "outputs")


class TaskConnectionsDirective(RstDirective):
    """``.. rb-task-connections:: module.TaskClass``"""

    required_arguments = 1
    optional_arguments = 0

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        path = self.arguments[0]
        try:
            task = import_object(path)
            connections_class = task.ConfigClass.ConnectionsClass
        except Exception as err:  # noqa: BLE001
            LOG.info("rb-task-connections: %s not importable (%s); rendering a note", path, err)
            return [".. note::", "", f"   ``{path}`` could not be imported when this page was built.", ""]
        order = (
            "instrument",
            "skymap",
            "tract",
            "patch",
            "band",
            "physical_filter",
            "exposure",
            "visit",
            "detector",
        )
        dims = sorted(
            getattr(connections_class, "dimensions", ()),
            key=lambda d: (order.index(d) if d in order else len(order), d),
        )
        rows = []
        for name, conn in connections_class.allConnections.items():
            kind = type(conn).__name__
            extras = []
            if getattr(conn, "multiple", False):
                extras.append("multiple")
            if getattr(conn, "deferLoad", False):
                extras.append("deferred load")
            cdims = getattr(conn, "dimensions", None)
            cdims_text = ", ".join(cdims) if cdims else "(none)"
            if cdims is None:
                cdims_text = "—"
            rows.append(
                [
                    lit(name),
                    esc(kind + (f" ({', '.join(extras)})" if extras else "")),
                    lit(conn.name),
                    lit(conn.storageClass),
                    esc(cdims_text),
                    doc_text(getattr(conn, "doc", "") or ""),
                ]
            )
        lines = [
            f"Quantum dimensions: ``{', '.join(dims) if dims else '(none)'}``.",
            "",
        ]
        lines += list_table(
            ["Connection", "Kind", "Dataset type", "Storage class", "Dimensions", "Description"],
            rows,
            widths="14 12 18 14 14 28",
        )
        lines += [
            "Connections as declared on the class; the configuration may remove some or change "
            "their storage class (see the configuration fields below).",
            "",
        ]
        return lines


# --------------------------------------------------------------------------------------
# Optional toctree
# --------------------------------------------------------------------------------------


class OptionalTocTree(RstDirective):
    """A toctree that silently leaves out entries that are not documents of this build."""

    has_content = True
    optional_arguments = 0
    option_spec = {
        "maxdepth": directives.unchanged,
        "caption": directives.unchanged,
        "titlesonly": directives.flag,
        "hidden": directives.flag,
    }

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        env = self.state.document.settings.env
        here = env.docname.rpartition("/")[0]
        found = env.found_docs
        entries: list[str] = []
        for raw in self.content:
            entry = raw.strip()
            if not entry:
                continue
            full = f"{here}/{entry}" if here and not entry.startswith("/") else entry.lstrip("/")
            if any(c in entry for c in "*?["):
                matches = sorted(d for d in found if fnmatch.fnmatch(d, full))
                if not matches:
                    LOG.info("rb-optional-toctree in %s: no document matches %r", env.docname, entry)
                entries += ["/" + m for m in matches]
            elif full in found:
                entries.append(entry)
            else:
                LOG.info(
                    "rb-optional-toctree in %s: %r is not part of this build; left out", env.docname, entry
                )
        if not entries:
            return []
        lines = [".. toctree::"]
        for opt, value in self.options.items():
            lines.append(f"   :{opt}:" + (f" {value}" if value else ""))
        lines.append("")
        lines += [f"   {e}" for e in entries]
        lines.append("")
        return lines


# --------------------------------------------------------------------------------------
# Model cards
# --------------------------------------------------------------------------------------


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _json_block(value: Any) -> list[str]:
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=True)
    return [".. code-block:: json", ""] + ["   " + line for line in text.splitlines()] + [""]


def render_value_tables(data: dict[str, Any], title_char: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Render a JSON dict generically: scalars in one table, then one table per structure."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in data.items() if _is_scalar(v) and k not in skip]
    if scalars:
        lines += list_table(["Quantity", "Value"], [[lit(k), fmt_num(v)] for k, v in scalars], widths="40 60")
    for key, value in data.items():
        if key in skip or _is_scalar(value):
            continue
        lines += heading(key.replace("_", " "), title_char)
        lines += render_structure(value)
    return lines


# Column order of the tables of known metrics (JSON metadata is stored with sorted keys).
PREFERRED_COLUMNS = (
    "epoch",
    "bin_low",
    "bin_high",
    "snr_median",
    "n",
    "n_real",
    "n_bogus",
    "n_selected",
    "count",
    "completeness",
    "completeness_err",
    "recall",
    "rejection",
    "mean_predicted",
    "fraction_real",
    "threshold",
    "purity",
    "target_purity",
    "reached",
)


def _ordered(cols: list[str]) -> list[str]:
    rank = {c: i for i, c in enumerate(PREFERRED_COLUMNS)}
    return sorted(cols, key=lambda c: (rank.get(c, len(rank)), cols.index(c)))


def render_structure(value: Any) -> list[str]:
    """Render a list/dict JSON value as a table where it has a tabular shape."""
    # dict of equal-length lists: columns
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        if len(lengths) == 1 and all(_is_scalar(x) for v in value.values() for x in v):
            n = lengths.pop()
            cols = _ordered(list(value))
            rows = [[fmt_num(value[c][i]) for c in cols] for i in range(n)]
            return list_table([lit(c) for c in cols], rows)
    # dict of flat dicts: rows
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        if all(_is_scalar(x) for v in value.values() for x in v.values()):
            cols: list[str] = []
            for v in value.values():
                cols += [c for c in v if c not in cols]
            cols = _ordered(cols)
            rows = [[lit(k)] + [fmt_num(v.get(c)) for c in cols] for k, v in value.items()]
            return list_table([""] + [lit(c) for c in cols], rows)
    # list of flat dicts: rows
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if all(_is_scalar(x) for v in value for x in v.values()):
            cols = []
            for v in value:
                cols += [c for c in v if c not in cols]
            cols = _ordered(cols)
            rows = [[fmt_num(v.get(c)) for c in cols] for v in value]
            return list_table([lit(c) for c in cols], rows)

    # flat dict (values scalars or lists of scalars)
    def flat(v: Any) -> bool:
        return _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v))

    if isinstance(value, dict) and all(flat(v) for v in value.values()):
        if not value:
            return ["(empty)", ""]

        def cell(v: Any) -> str:
            return ", ".join(fmt_num(x) for x in v) if isinstance(v, list) else fmt_num(v)

        return list_table(["Key", "Value"], [[lit(k), cell(v)] for k, v in value.items()], widths="40 60")
    if isinstance(value, list) and all(_is_scalar(v) for v in value):
        return [", ".join(fmt_num(v) for v in value) or "(empty)", ""]
    return _json_block(value)


_HEADLINE = (
    ("auc", "ROC AUC"),
    ("average_precision", "Average precision"),
    ("threshold", "Threshold"),
    ("purity", "Purity at threshold"),
    ("completeness", "Completeness at threshold"),
    ("false_positive_rate", "False-positive rate at threshold"),
    ("ece", "Expected calibration error (ECE)"),
    ("n", "Candidates"),
    ("n_real", "Real candidates"),
)


def render_metrics(metrics: dict[str, Any], char: str) -> list[str]:
    """Render a metrics dict: headline table, other scalars, then one table per structure."""
    lines: list[str] = []
    head = [(label, metrics[k]) for k, label in _HEADLINE if k in metrics]
    if head:
        lines += list_table(
            ["Metric", "Value"], [[esc(label), fmt_num(v)] for label, v in head], widths="50 50"
        )
    rest = {k: v for k, v in metrics.items() if k not in dict(_HEADLINE)}
    titles = {
        "completeness_vs_snr": "Completeness by SNR",
        "per_type": "By population (truth type)",
        "threshold_choice": "Threshold choice",
        "reliability": "Reliability diagram",
    }
    scalars = {k: v for k, v in rest.items() if _is_scalar(v)}
    if scalars:
        lines += list_table(
            ["Quantity", "Value"], [[lit(k), fmt_num(v)] for k, v in scalars.items()], widths="50 50"
        )
    for key, value in rest.items():
        if _is_scalar(value):
            continue
        lines += heading(titles.get(key, key.replace("_", " ")), char)
        lines += render_structure(value)
    return lines


def model_card(path: Path) -> list[str]:
    """Return the rst lines of the model card of one package file."""
    from lsst.meas.realbogus.model_package import read_model_package

    try:
        package = read_model_package(path)
    except Exception as err:  # noqa: BLE001 - an unreadable package is shown, not fatal
        LOG.info("model card: cannot read %s: %s", path, err)
        return [".. note::", "", f"   The package ``{path.name}`` could not be read: {esc(err)}", ""]
    md = package.metadata
    n_params = sum(int(t.numel()) for t in package.state_dict.values())
    norm = md.normalization.to_dict()
    rows = [
        ("File", lit(path.name) + f" ({path.stat().st_size / 1024:,.0f} kB)"),
        ("Version (alert ``reliabilityVersion``)", lit(md.version)),
        ("Kind", lit(md.kind)),
        ("Architecture", lit(md.architecture)),
        ("Architecture arguments", lit(json.dumps(md.architecture_kwargs, sort_keys=True))),
        ("Parameters", f"{n_params:,}"),
        ("Input channels (in order)", ", ".join(lit(c) for c in md.channels)),
        ("Network input channels", f"{md.input_channels}"),
        ("Cutout size", f"{md.cutout_size} × {md.cutout_size} pixels"),
        (
            "Normalisation",
            lit(md.normalization.method)
            + " — "
            + ", ".join(f"{lit(k)}: {lit(v)}" for k, v in norm.items() if k != "method"),
        ),
        ("Output activation", lit(md.output_activation)),
        ("Symmetric (dihedral invariance claimed)", str(md.symmetric)),
        ("Operating threshold", fmt_num(md.threshold)),
        ("Purity at threshold (validation)", fmt_num(md.threshold_purity)),
        ("Completeness at threshold (validation)", fmt_num(md.threshold_completeness)),
        ("Created", lit(md.created)),
        ("Weights SHA-256", lit(md.weights_sha256)),
        ("Package format version", str(md.format_version)),
    ]
    lines = list_table(
        ["Property", "Value"], [[esc(k) if "``" not in k else k, v] for k, v in rows], widths="35 65"
    )
    lines += heading("Known limits", "-")
    lines += [KNOWN_LIMITS.get(path.stem, GENERIC_LIMITS), ""]
    lines += heading("Metrics (stored in the package)", "-")
    if md.metrics:
        lines += render_metrics(md.metrics, "^")
    else:
        lines += ["The package records no metrics.", ""]
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            extra = json.loads(side.read_text())
        except (OSError, ValueError) as err:
            LOG.info("model card: cannot read %s: %s", side, err)
            extra = None
        if isinstance(extra, dict):
            lines += heading(f"Held-out evaluation ({side.name})", "-")
            summary = extra.get("summary") if isinstance(extra.get("summary"), dict) else None
            if summary is not None:
                lines += render_metrics(summary, "^")
                others = {k: v for k, v in extra.items() if k != "summary"}
                if others:
                    lines += render_value_tables(others, "^")
            else:
                lines += render_value_tables(extra, "^")
    lines += heading("Training provenance", "-")
    training = dict(md.training)
    if not training:
        lines += ["The package records no training provenance.", ""]
    else:
        history = training.pop("history", None)
        lines += render_value_tables(training, "^")
        if isinstance(history, list) and history:
            lines += heading("Training history", "^")
            lines += render_structure(history)
    return lines


class ModelCardDirective(RstDirective):
    """``.. rb-model-card:: path``"""

    required_arguments = 1
    optional_arguments = 0

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        path = Path(self.arguments[0])
        self.state.document.settings.env.note_dependency(str(path))
        return model_card(path)


def model_files(app: Any) -> list[Path]:
    """Return the model package files to document."""
    files: list[Path] = []
    for d in app.config.realbogus_model_dirs:
        files += sorted(Path(d).glob("*.safetensors"))
    return files


def _display(path: Path, app: Any) -> str:
    try:
        return str(path.resolve().relative_to(Path(app.srcdir).resolve().parent))
    except ValueError:
        return path.name


def write_model_pages(app: Any, config: Any) -> None:
    """Write one page per model package (``config-inited``); remove stale ones."""
    out_dir = Path(app.srcdir) / MODEL_PAGE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, str] = {}
    for path in model_files(app):
        title = f"Model card: ``{path.stem}``"
        text = "\n".join(
            [
                ".. This page is generated at build time by doc/_ext/realbogus_docs.py; do not edit.",
                "",
                f".. _model-card-{path.stem}:",
                "",
                title,
                "=" * len(title),
                "",
                f"Generated from the metadata of ``{_display(path, app)}`` when this documentation "
                "was built.",
                "",
                f".. rb-model-card:: {path}",
                "",
            ]
        )
        wanted[f"{path.stem}.rst"] = text
    for old in out_dir.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for name, text in wanted.items():
        target = out_dir / name
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    LOG.info("realbogus_docs: %d model card page(s) in %s", len(wanted), out_dir)


_AUTOMODAPI = re.compile(r"^\.\. automodapi:: *(\S+)\s*$((?:\n {3}:[^\n]*)*)", re.MULTILINE)


def remove_stale_api_pages(app: Any) -> None:
    """Remove pages sphinx-automodapi generated in an earlier build for objects that are no
    longer documented (they would warn "document isn't included in any toctree").

    Only pages of objects missing from their module's ``__all__`` (or skipped) are removed, so
    concurrent builds in the same source tree agree and never delete each other's pages.
    """
    src = Path(app.srcdir)
    api = src / app.config.automodapi_toctreedirnm
    if not api.is_dir():
        return
    documented: dict[str, set[str]] = {}
    for rst in src.rglob("*.rst"):
        if api in rst.parents or "_build" in rst.parts:
            continue
        for match in _AUTOMODAPI.finditer(rst.read_text(errors="replace")):
            module_name, options = match.group(1), match.group(2)
            skip = set()
            for line in options.splitlines():
                if line.strip().startswith(":skip:"):
                    skip |= {n.strip() for n in line.split(":skip:", 1)[1].split(",")}
            try:
                names = set(getattr(importlib.import_module(module_name), "__all__", []))
            except Exception:  # noqa: BLE001 - the build itself will report it
                return
            documented.setdefault(module_name, set()).update(names - skip)
    for page in api.glob("*.rst"):
        module_name, _, name = page.stem.rpartition(".")
        if name not in documented.get(module_name, ()):
            LOG.info("realbogus_docs: removing stale API page %s", page.name)
            page.unlink(missing_ok=True)


def exclude_missing_task_pages(app: Any, config: Any) -> None:
    """Exclude task pages whose task module cannot be found (an info message, no warning)."""
    for page, module in TASK_PAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            LOG.info("realbogus_docs: %s not found; page %s/%s left out", module, TASK_DIR, page)
            config.exclude_patterns.append(f"{TASK_DIR}/{page}.rst")


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------


def _rate(v: Any) -> str:
    return fmt_num(float(v)) if isinstance(v, int | float) else "—"


def bench_tables(data: dict[str, Any]) -> list[str]:
    """Return the rst tables of a ``bench_speed.py --json`` result."""
    lines: list[str] = []
    cfg = data.get("config", {})
    machine = data.get("machine", {})
    if cfg or machine:
        lines += heading("Run", "-")
        lines += render_structure(
            {
                **{f"config.{k}": v for k, v in cfg.items() if _is_scalar(v)},
                **{f"machine.{k}": v for k, v in machine.items() if _is_scalar(v)},
                "sgemm_gflops": data.get("sgemm_gflops"),
            }
        )
    summary = data.get("summary")
    if isinstance(summary, dict):
        lines += heading("Summary", "-")
        lines += render_structure(summary)
    cut = data.get("cutouts")
    if isinstance(cut, list) and cut:
        lines += heading("Cutout extraction (stamps per second)", "-")
        rows = [
            [
                fmt_num(e.get("n")),
                _rate(e.get("ours_rate")),
                _rate(e.get("ours_batched_rate")),
                _rate(e.get("incumbent_rate")),
            ]
            for e in cut
        ]
        lines += list_table(["sources", "ours", "ours, batched", "incumbent"], rows)
    models = data.get("models")
    if isinstance(models, list) and models:
        lines += heading("Model throughput (stamps per second)", "-")
        rows = [
            [
                lit(e.get("architecture")),
                lit(e.get("backend")),
                fmt_num(e.get("flops_per_source")),
                _rate(e.get("rate")),
                fmt_num(e.get("gflops")),
                fmt_num(e.get("fraction_of_peak")),
            ]
            for e in models
        ]
        lines += list_table(
            ["architecture", "backend", "FLOPs / source", "rate", "GFLOP/s", "fraction of sgemm peak"], rows
        )
    e2e = data.get("end_to_end")
    if isinstance(e2e, list) and e2e:
        lines += heading("End to end per detector (sources per second)", "-")
        labels: list[str] = []
        for e in e2e:
            labels += [k for k, v in e.items() if isinstance(v, dict) and k not in labels]
        rows = [[fmt_num(e.get("n"))] + [_rate(e.get(lbl, {}).get("rate")) for lbl in labels] for e in e2e]
        lines += list_table(["sources"] + [esc(lbl) for lbl in labels], rows)
    bd = data.get("breakdown")
    if isinstance(bd, dict) and bd:
        n = bd.get("n")
        per = {k: v for k, v in bd.items() if isinstance(v, dict)}
        if per and isinstance(n, int | float) and n:
            lines += heading(f"Where the time goes at {fmt_num(n)} sources (µs per source)", "-")
            stages: list[str] = []
            for v in per.values():
                stages += [s for s in v if s not in stages]
            rows = [
                [esc(k)]
                + [fmt_num(1e6 * v.get(s, math.nan) / n) for s in stages]
                + [fmt_num(1e6 * sum(v.values()) / n)]
                for k, v in per.items()
            ]
            lines += list_table(["scorer"] + [lit(s) for s in stages] + ["sum"], rows)
    wi = data.get("what_if")
    if isinstance(wi, list) and wi:
        lines += heading("What-if: other package settings", "-")
        rows = [
            [
                fmt_num(e.get("n")),
                fmt_num(e.get("size")),
                fmt_num(e.get("max_stat_pixels")),
                _rate(e.get("rate")),
                fmt_num(e.get("ratio")),
            ]
            for e in wi
        ]
        lines += list_table(["sources", "crop", "max_stat_pixels", "sources/s", "× incumbent"], rows)
    mem = data.get("memory")
    if isinstance(mem, dict) and mem:
        lines += heading("Peak memory above the images", "-")
        rows = [
            [esc(k), fmt_num(v / 2**20 if k != "n" and k != "incumbent_n" else v)]
            for k, v in mem.items()
            if isinstance(v, int | float)
        ]
        lines += list_table(["quantity", "value (MiB, counts as is)"], rows)
    return lines


class BenchDirective(RstDirective):
    """``.. rb-bench:: path`` (relative to the source directory)."""

    required_arguments = 0
    optional_arguments = 1

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        env = self.state.document.settings.env
        arg = self.arguments[0] if self.arguments else env.config.realbogus_bench_json
        path = Path(arg)
        if not path.is_absolute():
            path = Path(env.srcdir) / path
        env.note_dependency(str(path))
        command = ".venv/bin/python bench/bench_speed.py --json doc/_data/bench_speed.json"
        if not path.is_file():
            LOG.info("rb-bench: %s not found; rendering instructions", path)
            return [
                f"No benchmark results were available when this page was built (``{path.name}`` is "
                "missing).  Produce them, then rebuild the documentation:",
                "",
                ".. code-block:: bash",
                "",
                f"   {command}",
                "",
            ]
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            LOG.info("rb-bench: cannot read %s: %s", path, err)
            return [f"The benchmark file ``{path.name}`` could not be read ({esc(err)}).", ""]
        lines = [f"Numbers from ``{path.name}``, written by ``{command}``.", ""]
        return lines + bench_tables(data if isinstance(data, dict) else {})


# --------------------------------------------------------------------------------------
# Dataclass fields
# --------------------------------------------------------------------------------------


class DataclassFieldsDirective(RstDirective):
    """``.. rb-dataclass-fields:: module.Class``: fields, defaults and attribute docstrings."""

    required_arguments = 1
    optional_arguments = 0

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        import dataclasses

        from sphinx.pycode import ModuleAnalyzer

        path = self.arguments[0]
        try:
            cls = import_object(path)
            docs = ModuleAnalyzer.for_module(cls.__module__).find_attr_docs()
        except Exception as err:  # noqa: BLE001
            LOG.info("rb-dataclass-fields: %s not usable (%s)", path, err)
            return [f"(The fields of ``{path}`` could not be read when this page was built.)", ""]
        section_docs: dict[str, str] = {}
        try:
            from numpydoc.docscrape import NumpyDocString

            parsed = NumpyDocString(cls.__doc__ or "")
            for section in ("Attributes", "Parameters"):
                for item in parsed[section]:
                    for name in item.name.split(","):
                        section_docs.setdefault(name.strip(), " ".join(item.desc))
        except Exception as err:  # noqa: BLE001
            LOG.info("rb-dataclass-fields: cannot parse the docstring of %s (%s)", path, err)
        rows = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = lit(repr(f.default))
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = lit(repr(f.default_factory()))  # type: ignore[misc]
            else:
                default = "(required)"
            doc = " ".join(docs.get((cls.__qualname__, f.name), [])) or section_docs.get(f.name, "")
            rows.append([lit(f.name), default, doc_text(doc)])
        return list_table(["Field", "Default", "Meaning"], rows, widths="25 20 55")


# --------------------------------------------------------------------------------------
# Command-line help
# --------------------------------------------------------------------------------------


class ArgparseDirective(RstDirective):
    """``.. rb-argparse:: module [prog]``: the ``--help`` text of ``module.build_parser()``."""

    required_arguments = 1
    optional_arguments = 1

    def render(self) -> list[str]:
        """Return the rst lines to parse in place of the directive."""
        module_name = self.arguments[0]
        try:
            parser = importlib.import_module(module_name).build_parser()
        except Exception as err:  # noqa: BLE001
            LOG.info("rb-argparse: %s has no usable build_parser (%s)", module_name, err)
            return [f"(The options of ``{module_name}`` could not be read when this page was built.)", ""]
        if len(self.arguments) > 1:
            parser.prog = self.arguments[1]
        import os

        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "100"
        try:
            text = parser.format_help()
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old
        return [".. code-block:: text", ""] + ["   " + line for line in text.splitlines()] + [""]


# --------------------------------------------------------------------------------------
# Short references in docstrings
# --------------------------------------------------------------------------------------


def resolve_short_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``CutoutBatch``-style references of docstrings to the package's objects.

    Docstrings of the package refer to objects of sibling modules by their short name (the
    LSST convention inside one package: ```ModelMetadata```, ```mask_planes```).  Python's
    domain looks them up only in the current module and class; this handler, called for
    references it could not resolve, looks for a unique documented ``lsst.meas.realbogus``
    object whose dotted name ends with the target, preferring the current module, then the
    defining (deepest) module over a re-export at the package top level.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    if not target:
        return None
    domain = env.get_domain("py")
    suffix = "." + target
    candidates = [
        name
        for name in domain.objects
        if name.startswith("lsst.meas.realbogus.") and (name.endswith(suffix) or name == target)
    ]
    if not candidates and "." in target:
        # A dotted name under a sub-module the object is not documented under (e.g.
        # ``simulation.psf.PSF_KINDS`` documented as ``simulation.PSF_KINDS``): match the last
        # component, preferring the longest common dotted prefix.
        last = "." + target.rpartition(".")[2]
        parts = target.split(".")

        def common(name: str) -> int:
            n = 0
            for a, b in zip(name.split("."), parts):
                if a != b:
                    break
                n += 1
            return n

        pool = [n for n in domain.objects if n.startswith("lsst.meas.realbogus.") and n.endswith(last)]
        if pool:
            best_common = max(common(n) for n in pool)
            candidates = [n for n in pool if common(n) == best_common and best_common >= 3]
    if not candidates:
        return None
    module = node.get("py:module") or ""
    candidates.sort(key=lambda n: (not (module and n.startswith(module + ".")), -n.count("."), n))
    best = candidates[0]
    obj = domain.objects[best]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, best)


def setup(app: Any) -> dict[str, Any]:
    """Register the directives, configuration values and event handlers."""
    app.connect("missing-reference", resolve_short_reference)
    app.add_config_value("realbogus_model_dirs", [], "env")
    app.add_config_value("realbogus_bench_json", "", "env")
    app.add_directive("rb-task-config", TaskConfigDirective)
    app.add_directive("rb-task-connections", TaskConnectionsDirective)
    app.add_directive("rb-optional-toctree", OptionalTocTree)
    app.add_directive("rb-model-card", ModelCardDirective)
    app.add_directive("rb-bench", BenchDirective)
    app.add_directive("rb-argparse", ArgparseDirective)
    app.add_directive("rb-dataclass-fields", DataclassFieldsDirective)
    app.connect("config-inited", write_model_pages)
    # After sphinx-automodapi's own builder-inited handler (this extension is loaded last).
    app.connect("builder-inited", remove_stale_api_pages, priority=900)
    app.connect("config-inited", exclude_missing_task_pages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

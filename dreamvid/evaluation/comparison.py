"""`dreamvid compare`: the headline numbers of several reports side by side, in the terminal and as a page."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DreamvidError, UsageError
from ..rundir import REPORT_JSON, RunDir
from .report import HEADLINE, flagged, format_value, write_compare_html
from .scoring import get


def load_report(path) -> tuple[str, dict]:
    """A report from a run folder (RUN_DIR/eval/report.json), a report folder, or a report.json; and its name:
    the run's folder, else the report's."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", "pass run folders, report folders or report.json files")
    for candidate in (path, path / REPORT_JSON, RunDir(path).eval_dir / REPORT_JSON):
        if candidate.is_file():
            name = path.name if candidate != path else path.parent.name
            if candidate.parent.name == "eval" and candidate != path:
                name = candidate.parent.parent.name
            return name, _read_report(candidate)
    raise UsageError(f"no report found at {path}", f"run dreamvid eval {path} first")


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DreamvidError(f"{path} is not a readable report ({error})", "run dreamvid eval again") from None
    if not isinstance(report, dict) or "metrics" not in report:
        raise DreamvidError(f"{path} is not a dreamvid report", "run dreamvid eval again")
    return report


def compare(paths: list, html: Path | None = None, force: bool = False) -> str:
    """The headline metrics of several runs/reports side by side, as a terminal table; `html` also writes
    a combined page (an existing file only with `force`). Flagged numbers are marked with '!'."""
    if not paths:
        raise UsageError("compare needs at least one run or report")
    if html is not None and Path(html).exists() and not force:
        raise UsageError(f"{html} exists", "pass --force to replace it, or choose another --html")
    loaded = [load_report(p) for p in paths]
    names = _unique([name for name, _ in loaded])
    reports = [report for _, report in loaded]
    table = _table(["metric"] + names, _headline_rows(reports))
    if html is not None:
        write_compare_html(Path(html), list(zip(names, reports)))
    return table


def _unique(names: list[str]) -> list[str]:
    """The names, a repeated one numbered: run, run#2, run#3."""
    out: list[str] = []
    for name in names:
        base, k = name, 2
        while name in out:
            name = f"{base}#{k}"
            k += 1
        out.append(name)
    return out


def _headline_rows(reports: list[dict]) -> list[list[str]]:
    """One row per headline number that some report has: label, then each report's value ('!' when flagged)."""
    rows = []
    for key, label, _ in HEADLINE:
        cells = [format_value(key, get(report["metrics"], key)) + (" !" if key in flagged(report) else "")
                 for report in reports]
        if any(c.strip() not in ("-", "") for c in cells):
            rows.append([label] + cells)
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("! = outside the reference range calibrated on that run's own source")
    return "\n".join(lines)

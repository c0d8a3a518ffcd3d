"""`dreamvid eval` and `dreamvid compare`: weight-free metrics of a dream, calibrated by reference dreams.

    metrics.py        pure metric functions on uint8 frame arrays, the source's statistics, the reference dreams
    scoring.py        `score`: every metric group of a dream against its source; `get` reads one by dotted key
    calibration.py    `calibrate` scores the reference dreams; `flag_ranges`, `flags_for`: reference ranges, flags
    model_metrics.py  reconstruction, prediction and diversity dreams: the numbers that need the trained models
    pipeline.py       `evaluate` a run, `report_from_frames` for plain arrays; report.json and report.html
    comparison.py     `compare` reports side by side; `load_report`
    report.py         the self-contained HTML pages (plots.py: their plots)

docs/metrics.md defines every number.
"""
from __future__ import annotations

from .calibration import FLAG_RULES, calibrate, flag_ranges, flags_for
from .comparison import compare, load_report
from .metrics import REFERENCE_NAMES, Source, reference_dream, reference_dreams
from .model_metrics import (PREDICTION_CONTEXT, PREDICTION_KS, DreamerModels, LatentModels, model_diversity_dreams,
                            measure_models, prediction, reconstruction)
from .pipeline import REPORT_VERSION, evaluate, report_from_frames, write_outputs
from .report import HEADLINE, write_compare_html, write_report
from .scoring import DIVERSITY_DREAMS, DIVERSITY_HORIZON, DRIFT_WINDOWS, diversity_curve, get, prepare_source, score

__all__ = ["FLAG_RULES", "calibrate", "flag_ranges", "flags_for", "compare", "load_report", "REFERENCE_NAMES",
           "Source", "reference_dream", "reference_dreams", "PREDICTION_CONTEXT", "PREDICTION_KS", "DreamerModels",
           "LatentModels", "model_diversity_dreams", "measure_models", "prediction", "reconstruction",
           "REPORT_VERSION", "evaluate", "report_from_frames", "write_outputs", "HEADLINE", "write_compare_html",
           "write_report", "DIVERSITY_DREAMS", "DIVERSITY_HORIZON", "DRIFT_WINDOWS", "diversity_curve", "get",
           "prepare_source", "score"]

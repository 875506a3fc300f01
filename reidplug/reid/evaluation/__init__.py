"""Re-ID evaluation: distances, CMC/mAP/mINP (Market protocol), k-reciprocal re-ranking, AQE."""

from __future__ import annotations

from reidplug.reid.evaluation.distance import compute_distance
from reidplug.reid.evaluation.evaluator import ReidEvaluator, evaluate, extract_features, format_table
from reidplug.reid.evaluation.progress import rich_progress
from reidplug.reid.evaluation.query_expansion import average_query_expansion
from reidplug.reid.evaluation.rank import evaluate_rank, evaluate_rank_loop
from reidplug.reid.evaluation.reranking import re_ranking, re_ranking_reference

__all__ = [
    "ReidEvaluator",
    "average_query_expansion",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "evaluate_rank_loop",
    "extract_features",
    "format_table",
    "re_ranking",
    "re_ranking_reference",
    "rich_progress",
]

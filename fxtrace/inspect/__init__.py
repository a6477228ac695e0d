"""Inspection tables for fxtrace captures, fx graphs and TorchScript modules.

See ``docs/inspection.md``; the column sets in :data:`COLUMNS` are part of the API.
"""
from .dot import GraphvizNotFound, render_dot, to_dot
from .report import CheckReport, OutputCheck
from .tables import (
                     COLUMNS,
                     DEFAULT_TABLES,
                     TABLES,
                     check_table,
                     diff_table,
                     modules_table,
                     nodes_table,
                     ops_table,
                     passes_table,
                     show,
                     specialisations_table,
)

__all__ = [
    "nodes_table",
    "modules_table",
    "specialisations_table",
    "ops_table",
    "diff_table",
    "check_table",
    "passes_table",
    "show",
    "to_dot",
    "render_dot",
    "GraphvizNotFound",
    "TABLES",
    "COLUMNS",
    "DEFAULT_TABLES",
    "CheckReport",
    "OutputCheck",
]

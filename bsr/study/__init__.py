"""The study: the building blocks of notebooks 03-07 (which stay thin).

* :mod:`~bsr.study.sets`: test sets, trained runs, the image-path convention,
  the demo set-up;
* :mod:`~bsr.study.methods`: the compared methods and their row labels;
* :mod:`~bsr.study.scoring`: every method scored the same way;
* :mod:`~bsr.study.tables`: measured rows beside the paper's reported rows,
  written as CSV, Markdown and LaTeX;
* :mod:`~bsr.study.report`: ``REPORT.md``;
* :mod:`~bsr.study.diagnostics`: registration from content, or a learned
  offset; accuracy of the L_nda targets;
* :mod:`~bsr.study.external`: fused images of outside methods;
* :mod:`~bsr.study.features`: feature statistics of the registration network.

Naming: a *set* is a folder written by :mod:`bsr.datasets.testsets`
(``<dataset>_<kind><level>``); a *run* is a trained checkpoint
(``checkpoints/<run>/seed<k>/final.pt``); a *method* is a function of
:mod:`bsr.study.methods`. The notebooks use the names re-exported here.
"""

from .features import feature_statistics, grid_order, high_response_summary
from .methods import (BSR_FUSION_ONLY_LABEL, BSR_IDENTITY_LABEL, BSR_LABEL, IDENTITY, build_methods,
                      describe_methods)
from .report import write_report
from .scoring import content_check, nda_target_table, score
from .sets import checkpoint_paths, demo_inputs, image_path, inputs, load_sets, qualitative_rows, set_info
from .tables import (MEASURED_LABEL, METRICS6, REPORTED_LABEL, measured_wide, paper_table, registration_summary,
                     side_by_side, write_table)

__all__ = ["set_info", "inputs", "load_sets", "checkpoint_paths", "image_path", "qualitative_rows", "demo_inputs",
           "IDENTITY", "BSR_LABEL", "BSR_IDENTITY_LABEL", "BSR_FUSION_ONLY_LABEL", "build_methods",
           "describe_methods", "score", "content_check", "nda_target_table", "REPORTED_LABEL", "MEASURED_LABEL",
           "METRICS6", "measured_wide", "side_by_side", "paper_table", "registration_summary", "write_table",
           "write_report", "feature_statistics", "grid_order", "high_response_summary"]

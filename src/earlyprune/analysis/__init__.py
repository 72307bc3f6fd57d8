"""Tables, figures and reports from stored results — the paper's Appendix H and Figures 4–11.

Reads ``<store>/<run_id>/result.json`` files and never imports the training code, so a report
works on results copied from any machine. torch is imported for one optional step only: mask
agreement reads the stored ``mask.pt`` files, and without torch the report says so in one line.
``index.html`` leads with the sanity-check verdicts (:mod:`earlyprune.analysis.verdicts`) per method and
sparsity::

    from earlyprune.analysis import load_results, summarize, write_report

    df = load_results("runs/")            # one row per run
    summary = summarize(df)               # mean ± std over seeds, diverged/failed counted
    write_report("runs/", "report/")      # report/index.html, CSVs, tables, figures
"""

from earlyprune.analysis.aggregate import DEFAULT_GROUP, matching_sparsity, summarize
from earlyprune.analysis.load import StoreData, load_results, load_store
from earlyprune.analysis.report import write_report
from earlyprune.analysis.tables import tables
from earlyprune.analysis.text import summary_text

__all__ = [
    "DEFAULT_GROUP",
    "StoreData",
    "load_results",
    "load_store",
    "matching_sparsity",
    "summarize",
    "summary_text",
    "tables",
    "write_report",
]

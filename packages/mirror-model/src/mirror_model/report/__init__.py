"""Self-contained HTML reports of run and benchmark folders (``mirror-model report DIR``).

Details: ``docs/report.md``.
"""

from ._html import REPORT_HTML, write_report

__all__ = ["REPORT_HTML", "write_report"]

"""Reporting: the :class:`~.report.Report` of a run or a check with its JSON, Markdown and console renderings
(:mod:`.report`), and its pictures (:mod:`.plots`)."""

"""A static results site built from the store: no server, no network (plotly.js is written beside the pages).

One job per module: ``baselines`` (the references the verdicts use), ``history`` (value over commits with the
gate's verdicts and tolerance bands), ``cost`` (cost against resolution, crossovers), ``tables`` (the paper
tables), ``landing`` (what regressed since the last baseline), ``html`` (the page template) and ``build``
(write them all: ``build_site``)."""

from results.site.build import Site, build_site

__all__ = ["Site", "build_site"]

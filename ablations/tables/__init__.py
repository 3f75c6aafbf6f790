"""The papers' tables, one module per paper; ``get_table(id)`` and ``TABLES`` (id -> spec)."""

from __future__ import annotations

import difflib

from ablations.tables import mo, mo_video, t2md, teng, wd
from ablations.tables.spec import Preset, TableSpec, UnknownName, Variant

TABLES: dict[str, TableSpec] = {t.id: t for module in (t2md, teng, mo, mo_video, wd) for t in module.TABLES}
_ALIASES = {alias: t.id for t in TABLES.values() for alias in t.aliases}


def get_table(name: str) -> TableSpec:
    """A table by id or alias; an unknown name lists the close ones."""
    key = _ALIASES.get(name, name)
    if key in TABLES:
        return TABLES[key]
    close = difflib.get_close_matches(name, [*TABLES, *_ALIASES], n=4, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownName(f"unknown table {name!r}.{hint} (`ablations list` shows all {len(TABLES)})")


__all__ = ["TABLES", "Preset", "TableSpec", "UnknownName", "Variant", "get_table"]

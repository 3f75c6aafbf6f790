"""Cost measurements of registry entries: FLOPs (meta device), latency, sweeps to CSV and plots."""

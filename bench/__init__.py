"""Cost measurements of registry entries: FLOPs on the meta device (latency, memory and sweeps are to come)."""

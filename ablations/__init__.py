"""The papers' experiments: training stages and (to come) tables, data, sampling and FID."""

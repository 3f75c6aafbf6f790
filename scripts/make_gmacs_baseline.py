"""Regenerate results/baselines/cpu-gmacs.csv (see bench/baseline.py): python scripts/make_gmacs_baseline.py"""

from bench.baseline import BASELINE, baseline_rows
from results.export import write_csv

if __name__ == "__main__":
    rows = baseline_rows()
    write_csv(rows, BASELINE)
    print(f"{len(rows)} rows -> {BASELINE}")

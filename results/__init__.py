"""One store for every measurement (bench and ablations), with exports, comparisons and regression gates."""

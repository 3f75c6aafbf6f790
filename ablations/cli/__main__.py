"""`python -m ablations.cli ...` and `torchrun --nproc_per_node N -m ablations.cli train ...`."""

from ablations.cli import run

run()

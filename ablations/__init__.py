"""The papers' experiments: training (diffusion, teacher forcing, distillation), data sets, sampling, FID and
the papers' ablation tables as runnable specs (``ablations.tables``)."""

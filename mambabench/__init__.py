"""What every layer of the harness shares, and nothing more: settings read from the environment, the one
error type for user mistakes and the CLI policy that prints it, file locks and atomic writes, the device
check, and the executors that run jobs in processes or on Slurm. It imports no other package of ours."""

from .allocator import request_huge_pages

request_huge_pages()  # before PyTorch allocates its first large tensor, when it reads the setting (see allocator)

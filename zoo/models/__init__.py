"""One file per backbone; importing this package registers every configuration in ``zoo.registry``."""

from . import dim_mo, dim_teng, dit, pixart, t2md, uvit, wd_mamba  # noqa: F401

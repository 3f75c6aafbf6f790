"""One file per backbone; importing this package registers every configuration in ``zoo.registry``."""

from . import dim_mo, dim_mo_video, dim_teng, dit, latte, pixart, t2md, uvit, wd_mamba  # noqa: F401

"""One file per backbone; importing this package registers every configuration in ``zoo.registry``."""

from . import diffussm, dig, dim_mo, dim_mo_video, dim_teng, dis, dit, latte, pixart, sana, t2md, uvit, wd_mamba, zigma  # noqa: F401

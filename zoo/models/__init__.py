"""One file per backbone; importing this package registers every configuration in ``zoo.registry``."""

from . import dit, uvit  # noqa: F401

"""Re-export of :mod:`rlsmooth.agents.a2c`, where the agent is written."""
from rlsmooth.agents.a2c import *  # noqa: F401,F403

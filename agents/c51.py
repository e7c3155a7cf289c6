"""Re-export of :mod:`rlsmooth.agents.c51`, where the agent is written."""
from rlsmooth.agents.c51 import *  # noqa: F401,F403

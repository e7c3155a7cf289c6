"""Re-export of :mod:`rlsmooth.agents.dqn`, where the agent is written."""
from rlsmooth.agents.dqn import *  # noqa: F401,F403

"""Re-export of :mod:`rlsmooth.agents.ppo`, where the agent is written."""
from rlsmooth.agents.ppo import *  # noqa: F401,F403

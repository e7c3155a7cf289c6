"""The agents live in the package, in ``rlsmooth/agents/`` (``from rlsmooth.agents import AGENTS``).

This folder only re-exports them so that a checkout's ``import agents.dqn`` keeps working; it is
not installed.  Read the algorithm boxes in ``rlsmooth/agents/dqn.py``, ``c51.py``, ``ppo.py`` and ``a2c.py``.
"""
from rlsmooth.agents import AGENTS, algo_classes  # noqa: F401

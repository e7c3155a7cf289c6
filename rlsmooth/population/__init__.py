"""Many value-based runs in one process: seeds and variants of one agent and network shape trained
as a population, each member exact against its solo run (``loop.py``; stacked networks in
``stacked.py``, the stacked Adam in ``adam.py``, members and their state in ``members.py``)."""

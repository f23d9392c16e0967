"""The ``emofuse`` command line: the one composition root.

It puts the serving library (:mod:`serving`), the Triton launcher (:mod:`emofuse.triton_server`)
and the batch pool (:mod:`emofuse.batch`) together, and is the only place that may reach export
and training, lazily, for the commands that need them (``repo build``, ``export``, ``train``).
"""

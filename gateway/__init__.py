"""The web application: pages and the HTTP API over the serving library (:mod:`serving`).

It reaches the models only through Triton, via :mod:`serving`; it never imports torch, ``models``,
``training`` or ``export`` (checked by import-linter, see pyproject.toml).
"""

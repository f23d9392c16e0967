"""The code the generated repository's Python-backend models run (the ``python`` runtime).

Each generated ``<model>/1/model.py`` only imports :class:`graph.Graph` from here. It runs inside
Triton's Python backend stub: it imports ``triton_python_backend_utils``, numpy and ONNX Runtime,
and torch only on GPU instances.
"""

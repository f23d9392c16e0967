"""Implementations of the Python-backend models in the generated Triton repository.

Each generated ``<model>/1/model.py`` only imports its ``TritonPythonModel`` from here. These
modules run inside Triton's Python backend stub: they import ``triton_python_backend_utils``,
numpy and ONNX Runtime, never torch.
"""

"""FP16 TensorRT engines from exported ONNX files, for the native runtime's ``tensorrt_plan`` models.

Written against TensorRT's documented Python API (``tensorrt`` 10: Builder, OnnxParser,
optimisation profiles, ``build_serialized_network``). No machine of this project has TensorRT
(it cannot be installed from PyPI here, see the README), so this path has never run for real:
where the module is missing, :func:`build_engine` raises :class:`TensorRTUnavailable` saying so,
and the tests check the calls it makes against a stand-in module.

An engine is specific to the GPU model and the TensorRT version that built it: build it on the
serving machine (``emofuse repo build --runtime native --tensorrt`` there).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from types import ModuleType

from .repository import Tensor

__all__ = ["TensorRTUnavailable", "build_engine", "profile_shapes", "require_tensorrt"]

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 1 << 30  # scratch memory TensorRT may use while choosing kernels


class TensorRTUnavailable(RuntimeError):
    """The ``tensorrt`` Python module cannot be imported on this machine."""


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; :class:`TensorRTUnavailable` where it is missing."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as err:
        raise TensorRTUnavailable(
            "TensorRT is not installed here (`import tensorrt` failed), so no engine can be built. Serve the ONNX files "
            "(the default), or build on a machine with TensorRT 10 and an NVIDIA GPU."
        ) from err


def profile_shapes(tensor: Tensor, item: Sequence[int], max_batch: int, opt_batch: int) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of one input: batch 1 .. ``max_batch``, optimised for ``opt_batch``;
    an axis of variable length (-1 in ``tensor.dims``) from 1 up to its length in ``item``."""
    lowest = tuple(1 if d == -1 else n for d, n in zip(tensor.dims, item, strict=True))
    return (1, *lowest), (opt_batch, *item), (max_batch, *item)


def build_engine(
    onnx: bytes,
    inputs: Sequence[Tensor],
    items: Mapping[str, Sequence[int]],
    *,
    max_batch: int,
    opt_batch: int,
    fp16: bool = True,
) -> bytes:
    """A serialised TensorRT engine (Triton's ``model.plan``) of an ONNX graph.

    Parameters
    ----------
    onnx : bytes
        The graph, batch axis dynamic (:mod:`export.artefact`).
    inputs : tensors
        Its inputs as Triton states them (dims without the batch axis, -1 where variable).
    items : {input name: dims}
        The longest item of each input (replacing the -1s), e.g. 15 frames.
    max_batch, opt_batch : int
        The optimisation profile's batch range: up to the config's ``max_batch_size``, tuned for
        its largest preferred batch size.
    fp16 : bool
        Let TensorRT pick half-precision kernels where faster (inputs and outputs keep their types).

    Raises
    ------
    TensorRTUnavailable
        Without the ``tensorrt`` module.
    RuntimeError
        If TensorRT cannot parse or build the graph; the message holds the parser's errors.
    """
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for tensor in inputs:
        profile.set_shape(tensor.name, *profile_shapes(tensor, items[tensor.name], max_batch, opt_batch))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build an engine for this graph; its log above says why.")
    log.info("built a TensorRT engine: %d bytes, batch 1..%d (opt %d), fp16=%s", plan.nbytes, max_batch, opt_batch, fp16)
    return bytes(plan)

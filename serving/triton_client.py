"""Talk to the Triton server over gRPC: model descriptions, and requests kept in flight.

Every analysis reaches the models through this client; nothing on that path imports torch.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .errors import ModelCrashed, ModelError, TritonTimeout, TritonUnavailable, UpstreamError

T = TypeVar("T")

__all__ = ["CRASH_WAITS_S", "DEFAULT_TIMEOUT_S", "EmotionClient", "ModelInfo"]

#: Seconds one request may take before it fails with TritonTimeout.
DEFAULT_TIMEOUT_S = 60.0
#: Requests sent and not yet answered, per client: enough to keep the server's batcher fed.
DEFAULT_IN_FLIGHT = 4
#: Seconds to wait before each new try of a request refused because its model's process died: a
#: Triton started by emofuse restarts the model within about 3 s (emofuse.triton_watchdog).
CRASH_WAITS_S = (1.0, 2.0, 4.0, 8.0)

log = logging.getLogger(__name__)

# How Triton's Python backend refuses a request whose model instance lost its process:
# "Stub process 'speech_emotion_0_0' is not healthy." (instance 0 on device 0).
_DEAD_STUB = re.compile(r"Stub process '(?P<model>.+)_\d+_\d+' is not healthy")


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs to know of a served model, read from its config's parameters.

    Attributes
    ----------
    name : str
        Name in the repository.
    labels : tuple of str
        Class names in output order.
    weights : str
        'real', 'synthetic' or 'none' (see ``models.card``).
    max_batch_size : int
        Largest batch (of windows) one request may carry.
    parameters : dict of str to str
        All of the config's parameters, preprocessing settings among them.
    """

    name: str
    labels: tuple[str, ...]
    weights: str
    max_batch_size: int
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.weights == "real"

    @property
    def cards(self) -> tuple[str, ...]:
        """The models that answer for it (an ensemble's steps), each with a card in the
        repository (``emofuse models NAME`` prints it)."""
        return tuple(self.parameters["cards"].split(",")) if self.parameters.get("cards") else (self.name,)

    def settings(self, key: str, kind: type[T]) -> T:
        """The input settings ``key`` of the config (``name=value;...``, see ``export.pipelines``)
        as ``kind``, e.g. ``settings("mfcc", MfccSpec)``: how the model's inputs were made in training.

        Raises
        ------
        ModelError
            The config states no such settings, or ``kind`` does not take them.
        """
        text = self.parameters.get(key)
        if not text:
            raise ModelError(f"Model {self.name} states no {key} settings in its config; rebuild the repository.")
        try:
            return kind(**{name: _value(value) for name, _, value in (item.partition("=") for item in text.split(";"))})
        except (TypeError, ValueError) as err:
            raise ModelError(f"Model {self.name} has unreadable {key} settings {text!r}: {err}") from err


def _value(text: str) -> bool | int | float | str | None:
    """A setting's value as Python wrote it: None, True, False, a number, or the text itself."""
    if text in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[text]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def _upstream_error(err: InferenceServerException, url: str) -> UpstreamError:
    status = err.status() or ""
    if dead := _DEAD_STUB.search(err.message() or ""):
        model = dead["model"]
        return ModelCrashed(f"The process of model {model!r} on Triton at {url} has died and was not restarted in time: "
                            f"restart Triton (a Triton started by `emofuse triton start` or `emofuse serve` restarts the "
                            f"model by itself within seconds).", model)  # fmt: skip
    if "UNAVAILABLE" in status:
        return TritonUnavailable(f"Triton at {url} is not reachable: {err.message()}")
    if "DEADLINE_EXCEEDED" in status:
        return TritonTimeout(f"Triton at {url} did not answer in time.")
    return ModelError(f"Triton at {url} refused the request: {err.message()}")


@dataclass
class _Request:
    """One request of :meth:`EmotionClient.submit`, kept to be sent again."""

    model: str
    inputs: list[grpcclient.InferInput]
    outputs: list[str]
    future: Future[dict[str, np.ndarray]]
    tries: int = 0  # times sent again after its model's process died


class EmotionClient:
    """A gRPC client of one Triton server.

    Parameters
    ----------
    url : str
        ``host:port`` of Triton's gRPC endpoint.
    timeout_s : float
        Per-request limit in seconds.
    in_flight : int
        Requests :meth:`submit` keeps outstanding before it waits for one to finish.
    on_answer : callable, optional
        Called with the model's name and the request's seconds, from send to answer (or error),
        on the client's thread: a metrics hook, so it must be quick and must not raise.
    crash_waits_s : sequence of float
        Seconds before each new try of a request whose model's process died (:data:`CRASH_WAITS_S`).
    """

    def __init__(
        self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, in_flight: int = DEFAULT_IN_FLIGHT,
        on_answer: Callable[[str, float], None] | None = None, crash_waits_s: tuple[float, ...] = CRASH_WAITS_S,
    ) -> None:  # fmt: skip
        self.url, self.timeout_s, self.on_answer, self.crash_waits_s = url, timeout_s, on_answer, crash_waits_s
        self._client = grpcclient.InferenceServerClient(url)
        self._slots = threading.BoundedSemaphore(in_flight)
        self._models: dict[str, ModelInfo] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EmotionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model(self, name: str) -> ModelInfo:
        """Describe a served model; raises TritonUnavailable if it is not ready."""
        if name not in self._models:
            try:
                if not self._client.is_model_ready(name, client_timeout=self.timeout_s):
                    raise TritonUnavailable(f"Model {name!r} is not ready on Triton at {self.url}.")
                config = self._client.get_model_config(name, client_timeout=self.timeout_s).config
            except InferenceServerException as err:
                raise _upstream_error(err, self.url) from err
            params = {key: value.string_value for key, value in config.parameters.items()}
            self._models[name] = ModelInfo(
                name=name,
                labels=tuple(params["labels"].split(",")) if params.get("labels") else (),
                weights=params.get("weights", "none"),
                max_batch_size=config.max_batch_size,
                parameters=params,
            )
        return self._models[name]

    def submit(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> Future[dict[str, np.ndarray]]:
        """Send one request without waiting for its answer.

        Blocks only while ``in_flight`` requests are outstanding. The future's result maps each
        output name to its array; its exception is an :class:`UpstreamError`. A request refused
        because its model's process died is sent again after each of :data:`CRASH_WAITS_S`, while
        the server restarts the model; then it fails with :class:`~serving.errors.ModelCrashed`.
        """
        request = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        future: Future[dict[str, np.ndarray]] = Future()
        self._send(_Request(model, request, outputs, future))
        return future

    def _send(self, req: _Request) -> None:
        sent = time.perf_counter()

        def done(result: grpcclient.InferResult | None, error: InferenceServerException | None) -> None:
            self._slots.release()
            if self.on_answer is not None:
                self.on_answer(req.model, time.perf_counter() - sent)
            if error is None:
                req.future.set_result({name: result.as_numpy(name) for name in req.outputs})
                return
            failure = _upstream_error(error, self.url)
            if isinstance(failure, ModelCrashed) and req.tries < len(self.crash_waits_s):
                wait, req.tries = self.crash_waits_s[req.tries], req.tries + 1
                log.warning("%s: %s; trying again in %.0f s", req.model, error.message(), wait)
                timer = threading.Timer(wait, self._resend, (req,))
                timer.daemon = True  # a process that ends meanwhile does not wait for it
                timer.start()
            else:
                req.future.set_exception(failure)

        self._slots.acquire()
        try:
            self._client.async_infer(
                model_name=req.model,
                inputs=req.inputs,
                callback=done,
                outputs=[grpcclient.InferRequestedOutput(name) for name in req.outputs],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as err:
            self._slots.release()
            raise _upstream_error(err, self.url) from err

    def _resend(self, req: _Request) -> None:
        try:
            self._send(req)
        except UpstreamError as err:
            req.future.set_exception(err)
        except Exception as err:  # noqa: BLE001 - the client was closed meanwhile: the caller still gets an answer
            req.future.set_exception(TritonUnavailable(f"Triton at {self.url} could not be asked again: {err}"))

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Send one request and wait for its answer."""
        return self.submit(model, inputs, outputs).result()

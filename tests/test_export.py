"""`emofuse export`: ONNX and TorchScript files of every kind of checkpoint, checked against PyTorch
on real preprocessed windows, each with its card; and the TensorRT path.

No machine here has TensorRT. Its tests are of two kinds: the command says so plainly where the
module is missing (real), and ``build_engine`` is driven through a stand-in ``tensorrt`` module
that records the calls (MOCK: it checks the calls against TensorRT's documented API, not an engine).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.artefact import Artefact, ParityError, export_artefact
from emofuse.cli import main
from models.card import ModelCard

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"
TOLERANCE = 1e-4  # largest |logit difference| between PyTorch and an exported file


def _run_both(folder: Path, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = session.run(None, inputs)
    scripted = torch.jit.load(str(folder / "model.pt"))
    with torch.no_grad():
        out = scripted(*(torch.from_numpy(v) for v in inputs.values()))
    return from_onnx, [y.numpy() for y in ((out,) if isinstance(out, torch.Tensor) else out)]


@pytest.fixture(scope="module")
def windows(face_video: Path) -> list:
    """Real windows of a test video through the service's preprocessing."""
    from preprocessing.faces import CropSpec
    from preprocessing.recording import probe
    from preprocessing.windows import read_windows

    return list(read_windows(probe(face_video), crop=CropSpec(size=64, grey=True)))


def test_speech_checkpoint_exports_with_parity(windows, tmp_path: Path, capsys) -> None:
    from models.speech import load_speech
    from preprocessing.audio_features import log_mel

    assert main(["export", str(WEIGHTS / "speech"), "--out", str(tmp_path / "speech")]) == 0
    printed = capsys.readouterr().out
    assert "onnx: largest difference from PyTorch" in printed and "torchscript:" in printed
    artefact = Artefact.load(tmp_path / "speech")
    assert artefact.card.weights == "real" and artefact.card.metrics["export"]["parity"]["max_abs_diff_below"] == TOLERANCE
    model, _, spec = load_speech(WEIGHTS / "speech")
    mel = log_mel(np.stack([w.audio for w in windows]), spec)  # windows the export never saw
    with torch.no_grad():
        want = model(torch.from_numpy(mel)).numpy()
    for got in _run_both(tmp_path / "speech", {"LOG_MEL": mel}):
        assert np.abs(got[0] - want).max() < TOLERANCE and (got[0].argmax(1) == want.argmax(1)).all()


def test_av_checkpoint_exports_with_parity(windows, tmp_path: Path) -> None:
    from models.av import load_av
    from preprocessing.audio_features import mfcc

    assert main(["export", str(WEIGHTS / "av"), "--out", str(tmp_path / "av")]) == 0
    artefact = Artefact.load(tmp_path / "av")
    assert [t.name for t in artefact.inputs] == ["FACE_CROPS", "MFCC", "FACE_PRESENT", "AUDIO_PRESENT"]
    assert artefact.card.weights == "synthetic", "trained on synthetic data: must stay flagged"
    model, _ = load_av(WEIGHTS / "av")
    inputs = {
        "FACE_CROPS": np.stack([w.faces for w in windows]),
        "MFCC": mfcc(np.stack([w.audio for w in windows])),
        "FACE_PRESENT": np.stack([w.face_found for w in windows]),
        "AUDIO_PRESENT": (np.arange(len(windows)) % 2 == 0)[:, None],  # every other window silenced
    }
    faces, mfccs, found, voiced = (torch.from_numpy(v) for v in inputs.values())
    with torch.no_grad():
        out = model(faces, mfccs, found, voiced[:, 0])
    for logits, used in _run_both(tmp_path / "av", {k: np.ascontiguousarray(v) for k, v in inputs.items()}):
        assert np.abs(logits - out.logits.numpy()).max() < TOLERANCE
        np.testing.assert_array_equal(used, out.used.numpy())


def test_eeg_and_fusion_checkpoints_export(tmp_path: Path) -> None:
    for kind, inputs in (("eeg", ["EEG"]), ("fusion", ["WINDOW_LOGITS"])):
        assert main(["export", str(WEIGHTS / kind), "--out", str(tmp_path / kind)]) == 0
        artefact = Artefact.load(tmp_path / kind)
        assert [t.name for t in artefact.inputs] == inputs
        assert set(artefact.parity) == {"onnx", "torchscript"} and all(p["max_abs_diff"] < TOLERANCE for p in artefact.parity.values())


def test_a_checkpoint_without_its_card_is_refused(tmp_path: Path, capsys) -> None:
    lonely = tmp_path / "speech"
    lonely.mkdir()
    shutil.copy(WEIGHTS / "speech" / "speech.pt", lonely)
    assert main(["export", str(lonely), "--out", str(tmp_path / "out")]) == 1
    assert "speech.card.json not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="no card.json"):
        Artefact.load(lonely)


def test_a_trace_that_differs_from_pytorch_is_refused() -> None:
    class Branchy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if bool(x.sum() > 0) else x * 3  # data-dependent: a trace keeps one branch

    card = ModelCard("branchy", "test", ["a", "b"], {}, {}, "none", "test", "none", "none")
    with pytest.raises(ParityError, match="largest difference"):
        export_artefact(Branchy(), {"X": torch.ones(2, 2)}, ["Y"], card, probes={"X": -torch.ones(3, 2)})


def test_tensorrt_is_reported_missing(tmp_path: Path, capsys) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    assert main(["export", str(WEIGHTS / "eeg"), "--out", str(tmp_path / "eeg"), "--tensorrt"]) == 1
    assert "TensorRT is not installed here" in capsys.readouterr().err
    assert main(["repo", "build", "--out", str(tmp_path / "repo"), "--tensorrt"]) == 1
    assert "native runtime" in capsys.readouterr().err


class _StandIn(types.ModuleType):
    """MOCK of the ``tensorrt`` module: records what build_engine asks of it."""

    def __init__(self) -> None:
        super().__init__("tensorrt")
        self.calls: dict[str, object] = {"shapes": {}, "flags": []}
        rec = self.calls
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(FP16="fp16")

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                rec["shapes"][name] = (lo, opt, hi)

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec["workspace"] = size

            def set_flag(self, flag):
                rec["flags"].append(flag)

            def add_optimization_profile(self, profile):
                rec["profiles"] = rec.get("profiles", 0) + 1

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return memoryview(b"engine")

        class OnnxParser:
            def __init__(self, network, logger):
                pass

            def parse(self, data):
                rec["onnx"] = data
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_engines_are_built_for_the_batch_and_frame_ranges_mock(served_models: list, tmp_path: Path, monkeypatch) -> None:
    """MOCK (TensorRT cannot be installed here): the calls, profiles and the configs that result."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from export.build import _engine
    from export.repository import GraphModel, build_repository

    stand_in = _StandIn()
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in)
    face = next(m for m in served_models if m.name == "face_expression")
    assert _engine(face) == b"engine"
    assert stand_in.calls["shapes"] == {"FACE_CROPS": ((1, 1, 64, 64), (16, 15, 64, 64), (16, 15, 64, 64))}
    assert stand_in.calls["flags"] == ["fp16"] and stand_in.calls["profiles"] == 1 and stand_in.calls["onnx"] == face.artefact.onnx

    plans = {m.name: _engine(m) for m in served_models if isinstance(m, GraphModel) and m.network}
    root = build_repository(tmp_path / "trt", served_models, runtime="native", plans=plans)
    for name in plans:
        config = text_format.Parse((root / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.platform == "tensorrt_plan" and (root / name / "1" / "model.plan").read_bytes() == b"engine"
    glue = text_format.Parse((root / "trial_fusion" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert glue.platform == "onnxruntime_onnx"

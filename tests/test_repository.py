"""The generated model repository: valid Triton configs, reproducible, and the committed copy current."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

COMMITTED = Path(__file__).resolve().parents[1] / "model_repository"


def _text_files(root: Path) -> dict[str, bytes]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".onnx", ".pyc"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_configs_parse_with_tritons_own_definitions(repository) -> None:
    configs = sorted(repository.glob("*/config.pbtxt"))
    assert [c.parent.name for c in configs] == [
        "av_late_fusion", "emotion_av", "emotion_face", "emotion_speech",
        "face_expression", "face_window_pool", "speech_emotion", "speech_gate",
    ]  # fmt: skip
    for path in configs:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert config.name == path.parent.name
        assert config.input and config.output, f"{path} must state every input and output"
        for tensor in [*config.input, *config.output]:
            assert tensor.data_type != model_config_pb2.TYPE_INVALID and tensor.dims


@pytest.mark.parametrize(
    ("ensemble", "steps", "labels"),
    [
        ("emotion_face", ["face_expression", "face_window_pool"], "angry disgust fear happy sad surprise neutral"),
        ("emotion_speech", ["speech_emotion", "speech_gate"], "neutral calm happy sad angry fearful disgust surprised"),
        (
            "emotion_av",
            ["face_expression", "face_window_pool", "speech_emotion", "av_late_fusion"],
            "neutral happy sad angry fearful disgust surprised",
        ),
    ],
)
def test_ensembles_chain_their_models(repository, ensemble: str, steps: list[str], labels: str) -> None:
    config = text_format.Parse((repository / ensemble / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "ensemble"
    assert [step.model_name for step in config.ensemble_scheduling.step] == steps
    assert config.parameters["weights"].string_value == "real"
    assert (repository / ensemble / "labels.txt").read_text().split() == labels.split()
    assert config.parameters["labels"].string_value.split(",") == labels.split()


def test_python_models_batch_dynamically(repository) -> None:
    config = text_format.Parse((repository / "face_expression" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "python" and config.max_batch_size > 1
    assert list(config.dynamic_batching.preferred_batch_size)


def test_rebuild_is_byte_identical(repository, tmp_path) -> None:
    from export.build import build_default_repository

    again = build_default_repository(tmp_path / "again")
    assert _text_files(again) == _text_files(repository)
    for onnx in ("face_expression/1/model.onnx", "speech_emotion/1/model.onnx"):
        assert (again / onnx).read_bytes() == (repository / onnx).read_bytes()


def test_committed_repository_is_current(repository) -> None:
    if not COMMITTED.is_dir():
        pytest.fail("model_repository/ is missing: run `emofuse repo build` and commit its text files.")
    assert _text_files(COMMITTED) == _text_files(repository), "run `emofuse repo build` and commit the result"

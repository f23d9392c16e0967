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
    assert [c.parent.name for c in configs] == ["emotion_face", "face_expression", "face_window_pool"]
    for path in configs:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert config.name == path.parent.name
        assert config.input and config.output, f"{path} must state every input and output"
        for tensor in [*config.input, *config.output]:
            assert tensor.data_type != model_config_pb2.TYPE_INVALID and tensor.dims


def test_ensemble_chains_the_face_models(repository) -> None:
    config = text_format.Parse((repository / "emotion_face" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "ensemble"
    assert [step.model_name for step in config.ensemble_scheduling.step] == ["face_expression", "face_window_pool"]
    assert config.parameters["weights"].string_value == "real"
    labels = (repository / "emotion_face" / "labels.txt").read_text().split()
    assert config.parameters["labels"].string_value.split(",") == labels
    assert labels == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_python_models_batch_dynamically(repository) -> None:
    config = text_format.Parse((repository / "face_expression" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.backend == "python" and config.max_batch_size > 1
    assert list(config.dynamic_batching.preferred_batch_size)


def test_rebuild_is_byte_identical(repository, tmp_path) -> None:
    from export.build import build_default_repository

    again = build_default_repository(tmp_path / "again")
    assert _text_files(again) == _text_files(repository)
    onnx = "face_expression/1/model.onnx"
    assert (again / onnx).read_bytes() == (repository / onnx).read_bytes()


def test_committed_repository_is_current(repository) -> None:
    if not COMMITTED.is_dir():
        pytest.fail("model_repository/ is missing: run `emofuse repo build` and commit its text files.")
    assert _text_files(COMMITTED) == _text_files(repository), "run `emofuse repo build` and commit the result"

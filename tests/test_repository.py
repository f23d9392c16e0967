"""The generated model repository, both runtimes: valid Triton configs, ensembles that chain,
ONNX files that match their configs, reproducible builds, and the committed copy current.

The python runtime is served by a real Triton here (tests/test_triton_*.py). No standard Triton
(with its ONNX Runtime backend) runs here, so the native runtime is checked as that backend would
load it (every ONNX file's tensors against its config) and run by a small in-process executor of
its ensemble configs, whose answers must equal those of the real server on the python runtime.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

COMMITTED = Path(__file__).resolve().parents[1] / "model_repository"
NETWORKS = ["av_attention", "av_trial", "eeg_trial", "face_expression", "speech_emotion", "voice_activity"]
GLUE = ["av_attention_gate", "av_late_fusion", "face_window_pool", "speech_gate", "trial_fusion"]
ENSEMBLES = {
    "emotion_face": (["face_expression", "face_window_pool"], "angry disgust fear happy sad surprise neutral", "real"),
    "emotion_speech": (["speech_emotion", "voice_activity", "speech_gate"], "neutral calm happy sad angry fearful disgust surprised", "real"),
    "emotion_av": (
        ["face_expression", "face_window_pool", "speech_emotion", "voice_activity", "av_late_fusion"],
        "neutral happy sad angry fearful disgust surprised",
        "real",
    ),
    "emotion_av_attention": (["voice_activity", "av_attention", "av_attention_gate"], "neutral calm happy sad angry", "synthetic"),
    "emotion_av_eeg": (["av_trial", "eeg_trial", "trial_fusion"], "neutral calm happy sad angry", "synthetic"),
}
_NUMPY = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32, "TYPE_BOOL": np.bool_, "TYPE_INT32": np.int32}
_ONNX = {"TYPE_UINT8": onnx.TensorProto.UINT8, "TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_BOOL": onnx.TensorProto.BOOL,
         "TYPE_INT32": onnx.TensorProto.INT32}  # fmt: skip


def config(repository: Path, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((repository / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _text_files(root: Path) -> dict[str, bytes]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".onnx", ".pt", ".pyc"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize("runtime", ["python", "native"])
def test_configs_parse_with_tritons_own_definitions(runtime: str, repository: Path, native_repository: Path) -> None:
    root = repository if runtime == "python" else native_repository
    configs = sorted(root.glob("*/config.pbtxt"))
    assert [c.parent.name for c in configs] == sorted([*NETWORKS, *GLUE, *ENSEMBLES])
    for path in configs:
        c = config(root, path.parent.name)
        assert c.name == path.parent.name
        assert c.input and c.output, f"{path} must state every input and output"
        for tensor in [*c.input, *c.output]:
            assert tensor.data_type != model_config_pb2.TYPE_INVALID and tensor.dims
        if c.platform == "ensemble":
            continue
        assert (c.backend, c.platform) == (("python", "") if runtime == "python" else ("", "onnxruntime_onnx"))
        assert c.max_batch_size > 1 and list(c.dynamic_batching.preferred_batch_size)
        assert c.version_policy.latest.num_versions == 1
        (warmup,) = c.model_warmup
        assert sorted(warmup.inputs) == sorted(t.name for t in c.input) and all(-1 not in w.dims for w in warmup.inputs.values())
        assert [g.kind for g in c.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        files = sorted(p.name for p in (path.parent / "1").iterdir() if p.suffix != ".pyc" and p.name != "__pycache__")
        assert files == (["model.onnx", "model.pt", "model.py"] if runtime == "python" else ["model.onnx"])


@pytest.mark.parametrize("ensemble", sorted(ENSEMBLES))
def test_ensembles_chain_their_models(repository: Path, ensemble: str) -> None:
    steps, labels, weights = ENSEMBLES[ensemble]
    c = config(repository, ensemble)
    assert c.platform == "ensemble"
    assert [step.model_name for step in c.ensemble_scheduling.step] == steps
    assert c.parameters["weights"].string_value == weights, "synthetic weights must be flagged so that clients hide them"
    assert (repository / ensemble / "labels.txt").read_text().split() == labels.split()
    assert c.parameters["labels"].string_value.split(",") == labels.split()


def test_inputs_carry_the_settings_to_make_them(repository: Path) -> None:
    assert "n_mels=64" in config(repository, "emotion_speech").parameters["log_mel"].string_value
    assert "n_mfcc=10" in config(repository, "emotion_av_attention").parameters["mfcc"].string_value
    eeg = config(repository, "eeg_trial").parameters
    assert "window_s=5.25" in eeg["eeg"].string_value and len(eeg["channels"].string_value.split(",")) > 1


@pytest.mark.parametrize("ensemble", ["emotion_speech", "emotion_av", "emotion_av_attention"])
def test_listening_ensembles_take_16_khz_audio_and_say_how_to_make_it(repository: Path, ensemble: str) -> None:
    """A batch client sending its own tensors learns from the config alone what AUDIO_16K is."""
    c = config(repository, ensemble)
    (audio,) = (t for t in c.input if t.name == "AUDIO_16K")
    assert (model_config_pb2.DataType.Name(audio.data_type), list(audio.dims)) == ("TYPE_FP32", [57_600])
    assert "VOICE_PRESENT" not in [t.name for t in c.input], "the ensemble decides, not the client"
    assert {"VOICE_PRESENT", "VOICED_FRACTION"} <= {t.name for t in c.output}
    assert c.parameters["voice_audio"].string_value == "rate=16000"
    text = (repository / ensemble / "config.pbtxt").read_text()
    assert "# AUDIO_16K: the window's mono audio resampled to 16 kHz" in text and "# VOICED_FRACTION: " in text


def test_native_onnx_files_match_their_configs(native_repository: Path) -> None:
    """What Triton's ONNX Runtime backend checks at load: names, types and dims of every tensor."""
    for name in [*NETWORKS, *GLUE]:
        c = config(native_repository, name)
        graph = onnx.load(str(native_repository / name / "1" / "model.onnx")).graph
        for declared, actual in ((c.input, graph.input), (c.output, graph.output)):
            assert [t.name for t in declared] == [t.name for t in actual], name
            for t, a in zip(declared, actual, strict=True):
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in a.type.tensor_type.shape.dim]
                assert a.type.tensor_type.elem_type == _ONNX[model_config_pb2.DataType.Name(t.data_type)], (name, t.name)
                assert dims[0] == -1 and dims[1:] == list(t.dims), (name, t.name, dims)


def _native_ensemble(root: Path, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ensemble of the native repository as Triton would: each step's ONNX file in ONNX
    Runtime, its tensors renamed by the step's maps."""
    c = config(root, name)
    tensors = dict(inputs)
    for step in c.ensemble_scheduling.step:
        session = ort.InferenceSession(str(root / step.model_name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        feed = {key: tensors[value] for key, value in step.input_map.items()}
        outputs = session.run(list(step.output_map), feed)
        tensors.update({step.output_map[key]: out for key, out in zip(step.output_map, outputs, strict=True)})
    return {t.name: tensors[t.name] for t in c.output}


def _inputs(c: model_config_pb2.ModelConfig, rng: np.random.Generator, batch: int = 3) -> dict[str, np.ndarray]:
    arrays = {}
    for t in c.input:
        shape, dtype = (batch, *t.dims), _NUMPY[model_config_pb2.DataType.Name(t.data_type)]
        shape = tuple(15 if d == -1 else d for d in shape)
        if dtype is np.bool_:
            arrays[t.name] = rng.random(shape) > 0.3
            arrays[t.name][0] = True  # one item with every modality
        elif dtype is np.uint8:
            arrays[t.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            arrays[t.name] = rng.normal(-20, 20, shape).astype(np.float32)
    return arrays


@pytest.mark.parametrize("ensemble", sorted(ENSEMBLES))
def test_native_runtime_answers_as_the_python_runtime_does(native_repository: Path, repository: Path, client, ensemble: str) -> None:
    c = config(repository, ensemble)
    inputs = _inputs(c, np.random.default_rng(len(ensemble)))
    served = client.infer(ensemble, inputs, [t.name for t in c.output])
    native = _native_ensemble(native_repository, ensemble, inputs)
    for name, value in served.items():
        np.testing.assert_allclose(native[name], value, atol=1e-5, err_msg=f"{ensemble}.{name}")
    assert any(v.any() for v in served.values())


@pytest.mark.parametrize("ensemble", sorted(ENSEMBLES))
def test_every_request_with_the_answer_is_served(repository: Path, client, ensemble: str) -> None:
    """A client may ask for any of an ensemble's outputs beside its answer (EMOTION_PROBS, or
    TRIAL_PROBS): Triton then prunes the steps it does not need, which deadlocks where an
    ensemble output also feeds a step (export.graphs.SpeechGate says why none new does)."""
    c = config(repository, ensemble)
    names = [t.name for t in c.output]
    answer = "TRIAL_PROBS" if "TRIAL_PROBS" in names else "EMOTION_PROBS"
    inputs = _inputs(c, np.random.default_rng(0), batch=2)
    full = client.infer(ensemble, inputs, names)
    others = [n for n in names if n != answer]
    for r in range(len(others) + 1):
        for extra in itertools.combinations(others, r):
            got = client.infer(ensemble, inputs, [answer, *extra])
            for name, value in got.items():
                np.testing.assert_array_equal(value, full[name], err_msg=f"{ensemble}: {name} asked with {extra}")


def test_gpu_configs_put_networks_on_the_gpu(served_models: list, tmp_path: Path) -> None:
    from export.repository import build_repository

    root = build_repository(tmp_path / "gpu", served_models, gpu=True)
    kinds = {name: config(root, name).instance_group[0].kind for name in [*NETWORKS, *GLUE]}
    assert kinds == {n: model_config_pb2.ModelInstanceGroup.KIND_GPU if n in NETWORKS else model_config_pb2.ModelInstanceGroup.KIND_CPU
                     for n in kinds}  # fmt: skip
    assert (root / "face_expression" / "1" / "model.pt").stat().st_size > 100_000, "GPU instances run the TorchScript file"


def test_steps_are_checked_against_their_models(served_models: list, tmp_path: Path) -> None:
    from dataclasses import replace

    from export.repository import Ensemble, Step, build_repository

    face = next(m for m in served_models if m.name == "emotion_face")
    broken = replace(face, steps=(Step("face_expression", (("FACE_CROP", "FACE_CROPS"),), ()),))
    with pytest.raises(ValueError, match=r"face_expression has no input \['FACE_CROP'\]"):
        build_repository(tmp_path / "broken", [m for m in served_models if not isinstance(m, Ensemble)] + [broken])
    assert not (tmp_path / "broken").exists()


def test_rebuild_is_byte_identical(repository: Path, tmp_path: Path) -> None:
    from export.build import build_default_repository

    again = build_default_repository(tmp_path / "again")
    assert _text_files(again) == _text_files(repository)
    for onnx_file in ("face_expression/1/model.onnx", "speech_emotion/1/model.onnx", "trial_fusion/1/model.onnx"):
        assert (again / onnx_file).read_bytes() == (repository / onnx_file).read_bytes()


def test_committed_repository_is_current(repository: Path) -> None:
    if not COMMITTED.is_dir():
        pytest.fail("model_repository/ is missing: run `emofuse repo build` and commit its text files.")
    assert _text_files(COMMITTED) == _text_files(repository), "run `emofuse repo build` and commit the result"

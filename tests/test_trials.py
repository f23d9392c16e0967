"""Trials served end to end: a folder of videos with EEG, judged by `emotion_av_eeg` in a real Triton.

The trial folder is ``conftest.trial_folder``. The shipped AV, EEG and fusion models learnt synthetic data only, so the service withholds their
answers ("untrained"); the tests read the raw tensors to check that the served ensemble computes
what the PyTorch models compute on the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from serving.errors import InputError
from serving.trials import OUTPUTS, TRIAL_MODEL, TrialAnalyzer
from preprocessing.trial import read_trial_manifest

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"


def test_a_trial_is_judged_but_untrained_answers_are_withheld(trial_folder, client) -> None:
    analyzer = TrialAnalyzer(client)
    first, eeg_only, _ = read_trial_manifest(trial_folder / "manifest.csv")
    result = analyzer.analyze(first).to_dict()
    assert result["weights"] == "untrained" and result["modalities"] == {"av": True, "eeg": True}
    assert result["verdict"] is None and result["waver"] is None
    assert [w["modality"] for w in result["windows"]] == ["av"] * 6 + ["eeg"] * 4
    av, eeg = result["windows"][:6], result["windows"][6:]
    assert av[-1]["end_s"] == pytest.approx(14.0, abs=0.05) and eeg[1]["start_s"] == 2.917  # (14 - 5.25) / 3
    assert all(w["probabilities"] is None and w["label"] is None for w in result["windows"])
    assert analyzer.analyze(eeg_only).to_dict()["modalities"] == {"av": False, "eeg": True}


def test_the_served_trial_ensemble_computes_what_the_pytorch_models_do(trial_folder, client) -> None:
    from models.av import load_av
    from models.eeg import load_eeg
    from models.fusion import trial_matrix, waver
    from models.fusion import load_fusions

    analyzer = TrialAnalyzer(client)
    first = read_trial_manifest(trial_folder / "manifest.csv")[0]
    inputs, _, _ = analyzer.inputs(first)
    served = client.infer(TRIAL_MODEL, inputs, OUTPUTS)

    av_model, _ = load_av(WEIGHTS / "av")
    eeg_model, eeg_card = load_eeg(WEIGHTS / "eeg")
    fusions = load_fusions(WEIGHTS / "fusion")
    stats = eeg_card.preprocessing["standardisation"]
    eeg = (inputs["EEG"][0] - np.array(stats["mean"])[:, None]) / np.array(stats["std"])[:, None]
    with torch.no_grad():
        av = av_model(*(torch.from_numpy(inputs[k][0]) for k in ("FACE_CROPS", "MFCC", "FACE_PRESENT")), torch.from_numpy(inputs["AUDIO_PRESENT"][0, :, 0]))
        eeg_logits = eeg_model(torch.from_numpy(eeg.astype(np.float32))).numpy()[None]
        matrix, _ = trial_matrix(av.logits.numpy()[None], eeg_logits)
        cnn = fusions.cnn(torch.from_numpy(matrix)).softmax(-1).numpy()
    np.testing.assert_allclose(served["TRIAL_PROBS"], cnn, atol=1e-4)
    np.testing.assert_allclose(served["WAVER_PROBS"], waver(av.logits.numpy()[None], eeg_logits, fusions.weights).probabilities, atol=1e-4)
    np.testing.assert_allclose(served["EEG_WINDOW_PROBS"][0], torch.from_numpy(eeg_logits[0]).softmax(-1).numpy(), atol=1e-4)
    assert served["MODALITIES_USED"].tolist() == [[True, True]]


def test_a_trial_with_the_wrong_channels_is_named(trial_folder, client) -> None:
    wrong = read_trial_manifest(trial_folder / "manifest.csv")[2]
    with pytest.raises(InputError, match=r"t3\.mat"):
        TrialAnalyzer(client).analyze(wrong)


def test_the_plain_tritonclient_example_sends_its_own_tensors(trial_folder, client, triton, tmp_path) -> None:
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "send_trial.py"
    trials = read_trial_manifest(trial_folder / "manifest.csv")[:2]
    per_trial = [TrialAnalyzer(client).inputs(t)[0] for t in trials]
    np.savez(tmp_path / "trials.npz", **{k: np.concatenate([x[k] for x in per_trial]) for k in per_trial[0]})
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "trials.npz"), "--triton", triton.grpc_url],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["modalities"] for line in lines] == [{"av": True, "eeg": True}, {"av": False, "eeg": True}]
    assert all(line["weights"] == "synthetic" for line in lines), "the example passes the untrained flag on"
    served = client.infer(TRIAL_MODEL, {k: np.concatenate([x[k] for x in per_trial]) for k in per_trial[0]}, OUTPUTS)
    for line, probs in zip(lines, served["TRIAL_PROBS"]):
        assert list(line["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-4)
    described = subprocess.run([sys.executable, str(script), "--describe", "--triton", triton.grpc_url], capture_output=True, text=True, timeout=60, check=False)
    assert "EEG_PRESENT" in described.stdout and '"channels"' in described.stdout

"""Send your own preprocessed trial tensors to emofuse's `emotion_av_eeg` ensemble, with plain tritonclient.

No emofuse code is needed on the client: only numpy and ``tritonclient[grpc]``. A trial is
6 audio-video windows and 4 EEG windows, as the ensemble's config states (run with ``--describe``
to print it). Make the tensors as the configs' parameters say (``crop``, ``mfcc``, ``eeg``,
``channels``), or with emofuse's own preprocessing (``serving.trials.TrialAnalyzer.inputs``),
and save them in one .npz, one array per input, with a leading batch axis of trials:

    FACE_CROPS     uint8   (B, 6, 15, 64, 64)  grey face crops, 0..255, zeros where no face
    FACE_PRESENT   bool    (B, 6, 15)          which frames show a face
    MFCC           float32 (B, 6, 10, 156)     librosa MFCCs of each 3.6 s window at 22,050 Hz
    AUDIO_PRESENT  bool    (B, 6, 1)           the window has audio
    EEG            float32 (B, 4, C, S)        filtered, resampled EEG in microvolts (the model standardises it)
    EEG_PRESENT    bool    (B, 1)              the trial has EEG

    python deploy/examples/send_trial.py trials.npz --triton localhost:8001

prints one JSON line per trial: the fusion CNN's verdict, WAVER's, which modalities were used, and
whether the served models are trained at all (an "untrained" model's answer means nothing).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

MODEL = "emotion_av_eeg"
OUTPUTS = ["TRIAL_PROBS", "WAVER_PROBS", "AV_WINDOW_PROBS", "EEG_WINDOW_PROBS", "MODALITIES_USED"]
DTYPES = {"TYPE_UINT8": "UINT8", "TYPE_FP32": "FP32", "TYPE_BOOL": "BOOL"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tensors", nargs="?", help=".npz with one array per input of the ensemble")
    p.add_argument("--triton", default="localhost:8001", help="gRPC host:port (default: %(default)s)")
    p.add_argument("--describe", action="store_true", help="print the inputs the ensemble takes and its settings")
    args = p.parse_args(argv)

    client = grpcclient.InferenceServerClient(args.triton)
    config = client.get_model_config(MODEL, as_json=True)["config"]
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    if args.describe or not args.tensors:
        for t in config["input"]:
            print(f"{t['name']:14} {t['data_type']:10} (B, {', '.join(t['dims'])})")
        print(json.dumps(params, indent=2))
        return 0

    arrays = np.load(args.tensors)
    inputs = []
    for t in config["input"]:
        if t["name"] not in arrays:
            print(f"{args.tensors} lacks {t['name']}; run with --describe to see every input.", file=sys.stderr)
            return 1
        value = arrays[t["name"]]
        tensor = grpcclient.InferInput(t["name"], list(value.shape), DTYPES[t["data_type"]])
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer(MODEL, inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS])
    labels = params["labels"].split(",")
    for i, (trial, waver, used) in enumerate(zip(*(result.as_numpy(n) for n in ("TRIAL_PROBS", "WAVER_PROBS", "MODALITIES_USED")))):
        print(json.dumps({
            "trial": i,
            "weights": params["weights"],  # "real" only when every model learnt real data
            "verdict": labels[int(trial.argmax())] if used.any() else None,
            "waver": labels[int(waver.argmax())] if used.any() else None,
            "probabilities": {label: round(float(v), 4) for label, v in zip(labels, trial)},
            "modalities": {"av": bool(used[0]), "eeg": bool(used[1])},
        }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

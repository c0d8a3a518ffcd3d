"""The command line: one verb per task. It parses, calls the Python API, and prints; nothing else.

torch is imported only inside the verbs, so `dreamvid --help` answers at once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import BACKENDS, CROPS, PRESET_NAMES
from .errors import DreamvidError, Interrupted

DEVICES = ("auto", "cpu", "cuda", "mps")
REPROJECT_HELP = ("pass each dreamed latent through the VAE (decode, encode) before it is fed back: steadier "
                  "live-action dreams, stiller game ones; slower")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dreamvid", description="Neural dream videos: learn a clip, dream endless new video.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add_verb in (_add_train, _add_dream, _add_demo, _add_eval, _add_compare, _add_export, _add_serve,
                     _add_doctor):
        add_verb(verbs)
    return parser


def _add_train(verbs: argparse._SubParsersAction) -> None:
    train = verbs.add_parser("train", help="learn the look and motion of one or more videos")
    train.add_argument("sources", nargs="*", metavar="SOURCE", help="video files (any format FFmpeg reads)")
    train.add_argument("-o", "--out", required=True, type=Path, metavar="RUN_DIR", help="run folder to write")
    train.add_argument("--preset", default="default", choices=PRESET_NAMES)
    train.add_argument("--size", type=int, help="frame side in pixels: 64 (default), 128 or 256")
    train.add_argument("--fps", type=_positive_float, help="frame rate to learn at (default: source's, max 30)")
    train.add_argument("--crop", default="center", choices=CROPS, help="square crop or letterbox")
    train.add_argument("--minutes", type=_positive_float, help="wall-clock budget for the whole job")
    train.add_argument("--vae-epochs", type=int)
    train.add_argument("--rnn-epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--device", default="auto", choices=DEVICES)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                       help="data-parallel processes on this machine (one per GPU, or CPU processes)")
    train.add_argument("--port", type=int, metavar="PORT",
                       help="local port the --nproc processes meet on (default: a free one)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--force", action="store_true", help="start RUN_DIR over if it holds a run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_dream(verbs: argparse._SubParsersAction) -> None:
    dream = verbs.add_parser("dream", help="dream a new video from a trained run")
    dream.add_argument("run", type=Path, metavar="RUN_DIR")
    dream.add_argument("-o", "--out", type=Path, help="output .mp4/.webm/.gif or folder (default RUN_DIR/dream.mp4)")
    length = dream.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float)
    length.add_argument("--frames", type=int)
    dream.add_argument("--temperature", type=float)
    dream.add_argument("--seed", type=int, default=0)
    dream.add_argument("--reproject", action="store_true", help=REPROJECT_HELP)
    prime = dream.add_mutually_exclusive_group()
    prime.add_argument("--prime", type=Path, metavar="CLIP", help="start from the latents of this clip")
    prime.add_argument("--prime-frame", type=int, metavar="I", help="start from source frame I")
    dream.add_argument("--fps", type=float, help="playback rate (default: the run's)")
    dream.add_argument("--upscale", type=int, help="integer upscale (default: short side >= 256 px)")
    dream.add_argument("--device", default="auto", choices=DEVICES)
    dream.add_argument("--backend", default="torch", choices=BACKENDS,
                       help="onnx: step and decode through ONNX Runtime on the CPU (faster; needs dreamvid[export])")
    dream.add_argument("--force", action="store_true", help="overwrite an existing output")
    dream.add_argument("--quiet", action="store_true")


def _add_demo(verbs: argparse._SubParsersAction) -> None:
    demo = verbs.add_parser("demo", help="train on built-in Atari footage and dream, no arguments needed")
    demo.add_argument("-o", "--out", type=Path, default=Path("demo"), help="folder for footage, run and videos")
    demo.add_argument("--minutes", type=_positive_float, default=4.5, help="training budget")
    demo.add_argument("--preset", default="default", choices=PRESET_NAMES)
    demo.add_argument("--frames", type=int, default=3000, help="frames of footage to play")
    demo.add_argument("--seconds", type=_positive_float, default=60, help="length of the dream")
    demo.add_argument("--force", action="store_true", help="start over if the folder holds a demo")
    demo.add_argument("--quiet", action="store_true")


def _add_eval(verbs: argparse._SubParsersAction) -> None:
    evaluate = verbs.add_parser("eval", help="score a run's dream against its source, with an HTML report")
    evaluate.add_argument("run", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--dream", type=Path, help="score this video instead of a new dream")
    evaluate.add_argument("--frames", type=int, default=10000)
    evaluate.add_argument("--temperature", type=float)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--reproject", action="store_true", help=REPROJECT_HELP)
    evaluate.add_argument("-o", "--out", type=Path, metavar="REPORT_DIR")
    evaluate.add_argument("--force", action="store_true", help="replace the report already in REPORT_DIR")
    evaluate.add_argument("--quiet", action="store_true")


def _add_compare(verbs: argparse._SubParsersAction) -> None:
    compare = verbs.add_parser("compare", help="metrics of several runs or reports side by side")
    compare.add_argument("paths", nargs="+", type=Path, metavar="RUN_OR_REPORT")
    compare.add_argument("--html", type=Path, help="also write a combined HTML page")
    compare.add_argument("--force", action="store_true", help="replace the --html file if it exists")


def _add_export(verbs: argparse._SubParsersAction) -> None:
    export = verbs.add_parser("export", help="a run as ONNX graphs, or as one HTML page that dreams offline")
    export.add_argument("run", type=Path, metavar="RUN_DIR")
    export.add_argument("--onnx", type=Path, metavar="DIR", help="write step.onnx, decoder.onnx and a manifest")
    export.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained .html page")
    export.add_argument("--force", action="store_true", help="replace outputs that exist")


def _add_serve(verbs: argparse._SubParsersAction) -> None:
    serve = verbs.add_parser("serve", help="the browser studio: live dreams, training from the page")
    serve.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR")
    serve.add_argument("--runs-dir", type=Path, help="folder of runs to list (and where new runs go)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--data-dir", type=Path, help="uploads and the job queue (default ~/.local/share/dreamvid)")
    serve.add_argument("--max-upload-mb", type=_positive_float, default=2048, help="largest upload accepted")
    serve.add_argument("--max-viewers", type=_positive_int, default=8, help="live dreams at once")
    serve.add_argument("--max-uploads", type=_positive_int, default=2, help="uploads arriving at once")
    serve.add_argument("--max-queue", type=_positive_int, default=20, help="training jobs queued or running")
    serve.add_argument("--max-data-gb", type=_positive_float, default=50,
                       help="size the data folder may grow to with uploads and new runs")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a host name (or address) browsers use to reach a studio bound off loopback; repeatable")


def _add_doctor(verbs: argparse._SubParsersAction) -> None:
    verbs.add_parser("doctor", help="versions and device facts for a bug report")


def _train(args: argparse.Namespace) -> None:
    from .training import train
    from .training.parallel import World
    run = train(args.sources, args.out, preset=args.preset, size=args.size, fps=args.fps, crop=args.crop,
                minutes=args.minutes, vae_epochs=args.vae_epochs, rnn_epochs=args.rnn_epochs,
                batch_size=args.batch_size, device=args.device, seed=args.seed, resume=args.resume,
                force=args.force, progress=not args.quiet, nproc=args.nproc, port=args.port)
    if World.from_env().main:
        print(f"trained {run.directory}  (dream with: dreamvid dream {run.directory} --seconds 60)")


def _dream(args: argparse.Namespace) -> None:
    from .dreaming import load
    dreamer = load(args.run, device=args.device, backend=args.backend)
    dream = dreamer.dream(frames=args.frames, seconds=args.seconds, temperature=args.temperature, seed=args.seed,
                          prime=args.prime, prime_frame=args.prime_frame, reproject=args.reproject)
    path = dream.save(args.out or args.run / "dream.mp4", fps=args.fps, upscale=args.upscale, force=args.force,
                      progress=not args.quiet)
    print(f"wrote {path}  ({len(dream)} frames)")


def _demo(args: argparse.Namespace) -> None:
    from .demo import demo
    result = demo(args.out, minutes=args.minutes, preset=args.preset, footage_frames=args.frames,
                  dream_seconds=args.seconds, force=args.force, progress=not args.quiet)
    print(result.summary())


def _eval(args: argparse.Namespace) -> None:
    from .evaluation import evaluate
    from .rundir import REPORT_HTML, RunDir
    evaluate(args.run, dream=args.dream, frames=args.frames, temperature=args.temperature, seed=args.seed,
             reproject=args.reproject, out=args.out, force=args.force, progress=not args.quiet)
    print(f"wrote {(args.out or RunDir(args.run).eval_dir) / REPORT_HTML}")


def _compare(args: argparse.Namespace) -> None:
    from .evaluation import compare
    print(compare(args.paths, html=args.html, force=args.force))


def _export(args: argparse.Namespace) -> None:
    from .export import export
    print(export(args.run, onnx=args.onnx, html=args.html, force=args.force).summary())


def _serve(args: argparse.Namespace) -> None:
    from .serve import serve
    from .serve.limits import Limits
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_viewers=args.max_viewers,
                    max_uploads=args.max_uploads, max_queue=args.max_queue,
                    max_data_bytes=int(args.max_data_gb * 2 ** 30), allowed_hosts=tuple(args.allowed_host))
    serve(args.runs, runs_dir=args.runs_dir, host=args.host, port=args.port, data_dir=args.data_dir, limits=limits)


def _doctor(args: argparse.Namespace) -> None:
    from .doctor import format_report, report
    print(format_report(report()))


VERBS = {"train": _train, "dream": _dream, "demo": _demo, "eval": _eval, "compare": _compare, "export": _export,
         "serve": _serve, "doctor": _doctor}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        VERBS[args.verb](args)
    except Interrupted as exc:
        if not exc.quiet:
            print(f"\ndreamvid: {exc}", file=sys.stderr)
        return exc.exit_code
    except DreamvidError as exc:
        if args.debug:
            raise
        if not exc.quiet:
            print(f"dreamvid: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ndreamvid: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

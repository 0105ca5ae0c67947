"""Serve the BiMER web application (the page and its JSON API) with waitress.

    python -m bimer_tf.app --saved-model export/bimer/1
    python -m bimer_tf.app --saved-model export/bimer/1 --serving-url http://127.0.0.1:8501/v1/models/bimer

Open http://127.0.0.1:8000/ in a browser. The model and the speech
recognizer are loaded once, before the first request. Recordings up to
--max-duration-s (10 minutes by default) are taken; one longer than the
model hears at once gets the emotion timeline.
"""

from __future__ import annotations

from bimer_tf.cli import quiet_startup

quiet_startup()  # before anything imports TensorFlow

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from bimer_tf.app.uploads import MAX_DURATION_S, MAX_UPLOAD_MB, Limits  # noqa: E402
from bimer_tf.audio.asr import DEFAULT_ASR, NO_ASR, OFFLINE_ASR  # noqa: E402
from bimer_tf.cli import add_saved_model_argument, run_main  # noqa: E402
from bimer_tf.errors import InputError  # noqa: E402

DEFAULT_THREADS = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bimer_tf.app",
        description="Serve the BiMER web application: upload or record speech, "
        "see the transcript and the predicted emotion.",
    )
    add_saved_model_argument(
        parser,
        help="exported SavedModel version folder, e.g. export/bimer/1 (with --serving-url: the "
        "same version TF Serving runs; only its labels, inputs and audio settings are read; "
        "--model: old name)",
    )
    parser.add_argument(
        "--asr", default=DEFAULT_ASR, metavar="NAME",
        help=f"speech recognition for audio sent without a transcript: {', '.join(OFFLINE_ASR)} "
        "(offline weights installed by `make install`), any faster-whisper model name (e.g. "
        "small.en; downloaded once), a CTranslate2 Whisper folder, or none (typed text "
        f"required) (default: {DEFAULT_ASR})",
    )
    parser.add_argument(
        "--serving-url", metavar="URL",
        help="send model requests to this TF Serving REST model address, e.g. "
        "http://127.0.0.1:8501/v1/models/bimer, instead of loading the SavedModel here",
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 listens on "
        "every interface: the app has no authentication)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=MAX_UPLOAD_MB, metavar="MB",
        help="largest upload accepted; larger ones get HTTP 413 (default: %(default)g, enough for 10 "
        "minutes of 48 kHz stereo 16-bit WAV)",
    )
    parser.add_argument(
        "--max-duration-s", type=float, default=MAX_DURATION_S, metavar="S",
        help="longest audio accepted, in seconds; longer gets HTTP 413 (default: %(default)g, 10 minutes)",
    )
    parser.add_argument(
        "--long-audio-s", type=float, metavar="S",
        help="audio longer than this, sent without a transcript, gets the emotion timeline (segments "
        "scored one by one) instead of one label (default: what the model hears at once, the "
        "export's max_duration_s)",
    )
    parser.add_argument(
        "--max-timelines", type=int, default=Limits.max_timelines, metavar="N",
        help="long recordings cut and scored at once; one more gets HTTP 503 with Retry-After while "
        "short clips are still answered (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, metavar="N",
        help=f"requests served at once (waitress worker threads; default: {DEFAULT_THREADS})",
    )
    return parser


def _check_arguments(parser, args) -> None:
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.threads < 1 or args.max_timelines < 1:
        parser.error("--threads and --max-timelines must be at least 1")
    if args.max_upload_mb <= 0 or args.max_duration_s <= 0:
        parser.error("--max-upload-mb and --max-duration-s must be positive")
    if args.long_audio_s is not None and args.long_audio_s <= 0:
        parser.error("--long-audio-s must be positive")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _warm_up(app, info, with_asr: bool) -> None:
    """One request through the whole path (speech recognition too, when on), so
    the first visitor does not wait for graph tracing, buffers or lazy imports."""
    import io

    from bimer_tf.audio.wav import synthetic_wav

    fields = {}
    if info.takes_audio or with_asr:  # a clip the model hears whole: the single-utterance path
        seconds = min(1.5, float(info.audio.get("max_duration_s", 1.5)))
        wav = synthetic_wav(int(info.audio.get("sample_rate", 16000)), seconds)
        fields["audio"] = (io.BytesIO(wav), "warm-up.wav")
    if info.takes_text and not with_asr:
        fields["text"] = "hello"
    reply = app.test_client().post("/api/predict", data=fields, content_type="multipart/form-data")
    if reply.status_code != 200:  # e.g. TF Serving not up yet: the app starts anyway
        reason = (reply.get_json(silent=True) or {}).get("error", f"HTTP {reply.status_code}")
        print(f"warning: the warm-up request failed: {reason}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per request otherwise

    from bimer_tf.app import create_app, make_model_client
    from bimer_tf.audio.asr import load_recognizer

    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_duration_s=args.max_duration_s,
        long_audio_s=args.long_audio_s,
        max_timelines=args.max_timelines,
    )
    started = time.perf_counter()
    model = make_model_client(args.saved_model, args.serving_url)
    print(f"model: {model.source} ({model.info.kind}; labels {', '.join(model.info.labels)})", file=sys.stderr)
    recognizer = load_recognizer(args.asr) if args.asr != NO_ASR else None
    print(f"speech recognition: {args.asr}", file=sys.stderr)

    app = create_app(model, recognizer, limits, asr_name=args.asr)
    _warm_up(app, model.info, recognizer is not None)
    import waitress

    try:
        server = waitress.create_server(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads,
            # Flask answers oversize uploads with a JSON 413; waitress only stops absurd bodies.
            max_request_body_size=2 * limits.max_upload_bytes + 2**20,
            ident="bimer_tf",
        )
    except OSError as error:
        raise InputError(
            f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
            "choose another --port or --host"
        ) from None
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this port can use the app", file=sys.stderr)
    print(
        f"ready in {time.perf_counter() - started:.1f} s: http://{args.host}:{server.effective_port}/ "
        f"({args.threads} threads; Ctrl+C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))

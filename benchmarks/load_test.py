"""Load test of the web application: N concurrent clients for T seconds on loopback.

    python benchmarks/load_test.py --url http://127.0.0.1:8000 --clients 8 --seconds 60 [--no-asr]
    python benchmarks/load_test.py --saved-model export/bimer/1 --clients 8 --seconds 60   # starts the app itself

Each client posts the same clip to `/api/predict` in a loop until the time is
up (a request still running then may finish; none starts after). With
`--no-asr` each request also carries the `text` field, which skips speech
recognition. Prints one JSON line: requests, requests/s, latency p50/p95/p99,
errors (count, HTTP statuses, the first messages). The clip is a real RAVDESS
recording when ../shared/corpora is there, else a synthetic voiced clip.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RAVDESS_CLIP = REPO_ROOT.parent / "shared/corpora/ravdess4/wav/Actor_01/03-01-05-01-01-01-01.wav"
RAVDESS_TEXT = "Kids are talking by the door"
REQUEST_TIMEOUT_S = 120


def clip_bytes(path: str | None) -> tuple[bytes, str]:
    if path:
        return Path(path).read_bytes(), path
    if RAVDESS_CLIP.is_file():
        return RAVDESS_CLIP.read_bytes(), str(RAVDESS_CLIP)
    import io

    import numpy as np
    import soundfile

    rate, seconds = 16000, 3.5
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / rate
    samples = sum(0.2 / k * np.sin(k * phase) for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue(), "synthetic"


def multipart(audio: bytes, text: str | None) -> tuple[bytes, str]:
    boundary = "loadtest" + os.urandom(6).hex()
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="clip.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode() + audio + b"\r\n"
    )
    if text is not None:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode()
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def run_load(url: str, clients: int, seconds: float, audio: bytes, text: str | None) -> dict:
    body, content_type = multipart(audio, text)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    latencies, statuses, messages = [], Counter(), []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        while time.monotonic() < deadline:
            request = urllib.request.Request(
                f"{url}/api/predict", data=body, headers={"Content-Type": content_type}
            )
            start = time.perf_counter()
            try:
                with opener.open(request, timeout=REQUEST_TIMEOUT_S) as response:
                    reply = json.loads(response.read())
                    status = response.status
                    error = None if "label" in reply else f"no label in {reply}"
            except urllib.error.HTTPError as failure:
                status, error = failure.code, failure.read()[:300].decode("utf-8", "replace")
            except (urllib.error.URLError, OSError, ValueError) as failure:
                status, error = "no reply", f"{type(failure).__name__}: {failure}"
            elapsed = time.perf_counter() - start
            with lock:
                statuses[status] += 1
                if error is None:
                    latencies.append(elapsed)
                elif len(messages) < 5:
                    messages.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT_S + 5)
    wall = time.monotonic() - started
    total = sum(statuses.values())
    ms = sorted(1000 * x for x in latencies)

    def pct(q):
        return round(ms[min(len(ms) - 1, int(round(q / 100 * (len(ms) - 1))))], 1) if ms else None

    return {
        "url": url,
        "clients": clients,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "asr": text is None,
        "requests": total,
        "ok": len(latencies),
        "errors": total - len(latencies),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "statuses": {str(k): v for k, v in statuses.items()},
        "error_messages": messages,
    }


def start_app(model: str, asr: str, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "bimer_tf.app", "--saved-model", model, "--asr", asr, "--port", str(port),
               "--threads", str(threads)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("ready in"):
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, f"http://127.0.0.1:{port}"
    process.kill()
    raise SystemExit("the app did not start")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running app, e.g. http://127.0.0.1:8000")
    target.add_argument(
        "--saved-model", "--model", dest="saved_model", metavar="DIR",
        help="start `python -m bimer_tf.app --saved-model DIR` for the test (--model: old name)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send requests (default: 60)")
    parser.add_argument("--no-asr", action="store_true", help="send the transcript too (skips speech recognition)")
    parser.add_argument("--clip", help="audio file to send (default: a RAVDESS clip if present, else synthetic)")
    parser.add_argument("--asr", default="whisper-tiny-offline", help="with --saved-model: the app's --asr")
    parser.add_argument("--threads", type=int, default=4, help="with --saved-model: the app's --threads")
    args = parser.parse_args(argv)
    audio, origin = clip_bytes(args.clip)
    process = None
    url = args.url
    if args.saved_model:
        process, url = start_app(args.saved_model, args.asr, args.threads)
    try:
        result = run_load(url.rstrip("/"), args.clients, args.seconds, audio, RAVDESS_TEXT if args.no_asr else None)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps({**result, "clip": origin, "app_threads": args.threads if args.saved_model else None}))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

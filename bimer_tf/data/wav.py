"""`python -m bimer_tf.data.wav IN OUT.wav`: convert audio to 16 kHz PCM16 WAV.

The old name of `python -m bimer_tf.audio.wav`, kept for one release.
"""

from bimer_tf.audio.wav import main
from bimer_tf.cli import run_main

if __name__ == "__main__":
    raise SystemExit(run_main(main))

"""Audio on the Python side, before it reaches a graph (no TensorFlow).

    wav.py   WAV checks, decoding of any format (libsndfile, else ffmpeg), PCM16 encoding;
             `python -m bimer_tf.audio.wav IN OUT.wav` converts a file
    asr.py   speech recognition with faster-whisper (offline Whisper weights);
             `python -m bimer_tf.audio.asr CLIP` transcribes a file
"""

"""The speech-data engine shared by the keyword and speech-recognition recipes.

- ``voices``: the voice catalogue (engine, voice, gender, licence, split) and the held-out rule;
- ``sentences``: running English sentences (Debian fortunes, split by source file);
- ``synthesis``: one synthesiser call per engine (espeak-ng, MBROLA, flite, Festival, Pico, RHVoice, Kokoro, Piper);
- ``neural``: the two neural engines (Kokoro-82M voice blends, Piper);
- ``augment``: room acoustics (pyroomacoustics), band-limiting, vocal-tract warp, noise;
- ``cache``: clean speech cached per request on disk, rendered with a progress bar and resumable.
"""

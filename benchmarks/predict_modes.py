"""The modes of ``benchmarks/predict.py``: ``+``-joined tokens -> predictor and pipeline settings.

A mode such as ``bf16+split+autotune+pf6+wp12`` names the precision (``fp32`` / ``bf16``),
``compile``, ``autotune``, ``graphs`` / ``nographs``, one network variant (``grouped``, ``cl``,
``split``) and the plate-to-plate pipeline settings (``pf<N>``, ``wp<N>``, ``io<N>``,
``wpu<N>``, ``perunit``). :func:`parse_mode` gives the predictor's settings, :func:`parse_pipeline`
the pipeline's.
"""

from __future__ import annotations

import re

#: mode tokens -> network variant (one at most per mode)
VARIANT_TOKENS = {"grouped": "grouped", "cl": "channels_last", "split": "split"}
TOKENS = ("fp32", "bf16", "compile", "autotune", "graphs", "nographs", *VARIANT_TOKENS)
#: Plate-to-plate pipeline tokens: pf<N> prefetch, wp<N> writer processes, io<N> I/O threads,
#: wpu<N> wells per unit (e.g. ``bf16+split+autotune+pf6+wp12``; the engine-only runs ignore them).
PIPELINE_TOKEN = re.compile(r"(pf|wp|io|wpu)(\d+)")
PIPELINE_KEYS = {"pf": "prefetch", "wp": "write_processes", "io": "io_threads", "wpu": "wells_per_unit"}
#: ``perunit``: units one at a time, each draining the pipeline (instead of streamed through one)
PIPELINE_FLAGS = ("perunit",)


def parse_pipeline(mode: str) -> dict:
    """``predict`` pipeline settings of a mode's pf/wp/io/wpu tokens."""
    out = {}
    for token in mode.split("+"):
        m = PIPELINE_TOKEN.fullmatch(token.strip())
        if m:
            out[PIPELINE_KEYS[m.group(1)]] = int(m.group(2))
    return out


def parse_mode(mode: str) -> dict:
    """Predictor settings of a mode string such as ``bf16+split+autotune``.

    Raises
    ------
    ValueError
        On an unknown or repeated token, ``fp32`` with ``bf16``, or two network variants.
    """
    tokens = [t.strip() for t in mode.split("+")
              if not PIPELINE_TOKEN.fullmatch(t.strip()) and t.strip() not in PIPELINE_FLAGS]
    unknown = [t for t in tokens if t not in TOKENS]
    if unknown or not tokens:
        raise ValueError(f"mode {mode!r}: unknown token(s) {unknown} (known: {', '.join(TOKENS)})")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"mode {mode!r}: a token is repeated")
    if "fp32" in tokens and "bf16" in tokens:
        raise ValueError(f"mode {mode!r}: fp32 and bf16 exclude each other")
    variants = [VARIANT_TOKENS[t] for t in tokens if t in VARIANT_TOKENS]
    if len(variants) > 1:
        raise ValueError(f"mode {mode!r}: more than one network variant ({', '.join(variants)})")
    if "graphs" in tokens and "nographs" in tokens:
        raise ValueError(f"mode {mode!r}: graphs and nographs exclude each other")
    graphs = True if "graphs" in tokens else (False if "nographs" in tokens else None)
    return {"bf16": "bf16" in tokens, "compile": "compile" in tokens, "autotune": "autotune" in tokens,
            "network_variant": variants[0] if variants else "auto", "cuda_graphs": graphs}

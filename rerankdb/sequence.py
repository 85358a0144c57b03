"""The sequence space: a small causal transformer over each user's recent items (SASRec).

A user's sequence vector is the transformer's output at their newest item,
given their last ``max_len`` positive interactions in time order; an item's
sequence vector is its input embedding (tied weights, as SASRec).  Both are
trained at unit length, with a temperature, so the product's cosine ranking
in pgvector is exactly what the loss optimizes.

An item's input embedding is a learned vector plus a learned projection of
its text vector: an item the model never saw in training still has one (its
text part), so new items get sequence vectors without a retraining.

Pure torch and numpy: no database here.  :func:`train` fits a model to
sequences, :func:`user_vectors` runs it (batched forward passes), and
:class:`SequenceModel.state` / :meth:`SequenceModel.from_state` move its
weights to and from bytes.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("softmax", "bce")
Items = Sequence[int] | np.ndarray  # one user's item indices, oldest first
# Above this many items the softmax runs over a shared sample of negatives, not the catalog.
FULL_SOFTMAX_ITEMS = 50_000
SAMPLED_NEGATIVES = 8_192


@dataclass(frozen=True)
class SequenceConfig:
    """How the sequence model is shaped and trained (the defaults are the tuned ones)."""

    dim: int = 64
    max_len: int = 50  # the newest positive interactions a user's vector reads
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    temperature: float = 0.1  # softmax over cosines / temperature
    loss: str = (
        "softmax"  # "softmax" (full, over the catalog) or "bce" (SASRec's paper: one sampled negative)
    )
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 5  # epochs without a better held-out score before stopping
    windows_per_epoch: int = 50_000  # windows of max_len + 1 sampled per epoch: bounded time on long logs
    eval_users: int = 2_000  # users whose held-out newest item decides the early stop
    seed: int = 0


@dataclass
class TrainReport:
    epochs: int
    best_epoch: int
    held_out_ndcg: float  # NDCG@10 of the held-out newest items over the whole catalog, at the best epoch
    seconds: float
    users: int
    items: int
    history: list[float] = field(default_factory=list)


class SequenceModel(nn.Module):
    """SASRec with tied, unit-length item vectors and an optional text projection."""

    def __init__(self, n_items: int, config: SequenceConfig, text: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        self.n_items = n_items
        d = config.dim
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0: padding
        self.text_dim = 0 if text is None else int(text.shape[1])
        # With text, an item starts as its projected text and learns a correction (an item
        # no sequence holds keeps exactly its text part); without, as small noise.
        nn.init.normal_(self.item.weight, std=0.0 if self.text_dim else 0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.project = nn.Linear(max(self.text_dim, 1), d, bias=False)
        padded = np.zeros((n_items + 1, max(self.text_dim, 1)), dtype=np.float32)
        if text is not None:
            padded[1:] = text
        self.register_buffer("text", torch.from_numpy(padded), persistent=False)
        self.position = nn.Embedding(config.max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, dim_feedforward=d * 2, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, config.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)

    def item_vectors(self) -> torch.Tensor:
        """Every item's input embedding (row 0 padding), not normalized."""
        out = self.item.weight
        if self.text_dim:
            out = out + self.project(self.text)
        return out

    def _inputs(self, seq: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first block's input (B, L, dim) and the attention mask (B * heads, L, L)."""
        length = seq.shape[1]
        x = items[seq] * math.sqrt(self.config.dim) + self.position.weight[:length]
        x = self.dropout(x) * (seq > 0).unsqueeze(-1)
        # Causal, and no attention to padding; each position may always see itself
        # (a padded row with nothing to see would be NaN).
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        mask = causal.unsqueeze(0) | (seq == 0).unsqueeze(1)
        mask = mask & ~torch.eye(length, dtype=torch.bool, device=seq.device).unsqueeze(0)
        return x, mask.repeat_interleave(self.config.heads, dim=0)

    def hidden(self, seq: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) item indices, oldest first, right-padded with 0 -> (B, L, dim) outputs, each
        position reading only itself and the positions before it."""
        x, mask = self._inputs(seq, self.item_vectors() if items is None else items)
        out: torch.Tensor = self.norm(self.blocks(x, mask=mask))
        return out

    def last_with_attention(
        self, seq: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the output at each row's newest item (B, dim), the last block's attention at that
        position over the row's items (B, L), averaged over heads).  Inference only: the same
        outputs as :meth:`last`, the last block run by hand to get its attention."""
        x, mask = self._inputs(seq, items)
        layers = list(self.blocks.layers)
        for layer in layers[:-1]:
            x = layer(x, src_mask=mask)
        block = layers[-1]
        h = block.norm1(x)
        attended, weights = block.self_attn(h, h, h, attn_mask=mask, need_weights=True)
        x = x + attended
        x = x + block.linear2(block.activation(block.linear1(block.norm2(x))))
        out = self.norm(x)
        rows = torch.arange(len(seq), device=seq.device)
        newest = ((seq > 0).sum(dim=1) - 1).clamp(min=0)
        return out[rows, newest], weights[rows, newest]

    def last(self, seq: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The output at each row's newest item: (B, dim); a row of padding only gives row 0's."""
        newest = ((seq > 0).sum(dim=1) - 1).clamp(min=0)
        return self.hidden(seq, items)[torch.arange(len(seq), device=seq.device), newest]

    def state(self) -> bytes:
        """The weights and the config as bytes (what the database stores)."""
        buf = io.BytesIO()
        torch.save(
            {
                "config": asdict(self.config),
                "n_items": self.n_items,
                "text_dim": self.text_dim,
                "weights": {k: v for k, v in self.state_dict().items() if k != "text"},
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def from_state(cls, data: bytes, text: np.ndarray | None = None) -> SequenceModel:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        n_items, text_dim = int(saved["n_items"]), int(saved["text_dim"])
        if text_dim and (text is None or text.shape != (n_items, text_dim)):
            # The items' text vectors changed dimension since (another encoder): their
            # learned parts still hold; the text parts read zeros.
            text = np.zeros((n_items, text_dim), dtype=np.float32)
        model = cls(n_items, SequenceConfig(**saved["config"]), text if text_dim else None)
        model.load_state_dict(saved["weights"], strict=False)
        model.eval()
        return model


def windows(sequences: Sequence[Items], max_len: int) -> np.ndarray:
    """Each sequence's newest ``max_len`` entries, oldest first, right-padded with 0: (n, max_len).

    Positions count from the oldest item read, so the output at position k has
    always read k + 1 items, in training and at inference alike."""
    out = np.zeros((len(sequences), max_len), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-max_len:]
        out[row, : len(tail)] = tail
    return out


def _chunks(seq: Items, size: int) -> list[Items]:
    """Windows of ``size`` items from the newest backwards, overlapping by one, so that every
    transition of a long history trains once (the oldest window may be shorter)."""
    out = []
    end = len(seq)
    while end >= 2:
        out.append(seq[max(0, end - size) : end])
        end -= size - 1
    return out


def _ndcg_at_10(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean NDCG@10 of each row's target among all items (higher score first)."""
    target_score = scores.gather(1, targets.unsqueeze(1))
    rank = (scores > target_score).sum(dim=1)
    gains = torch.where(
        rank < 10, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(rank, dtype=torch.float)
    )
    return float(gains.mean())


def train(
    sequences: Sequence[Items],
    n_items: int,
    config: SequenceConfig = SequenceConfig(),
    *,
    text: np.ndarray | None = None,
    device: str | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[SequenceModel, TrainReport]:
    """Fit a model to users' item sequences (item indices 1..n_items, oldest first).

    Each sequence's newest item is held out: the epoch whose model ranks the
    held-out items best over the whole catalog (NDCG@10, ``eval_users`` of
    them) is kept, and training stops ``patience`` epochs after it.  The
    rest trains next-item prediction at every position.  ``progress(epoch,
    held_out_ndcg)`` after each epoch.
    """
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    t0 = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    usable = [s for s in sequences if len(s) >= 2]  # lists or int arrays
    train_seqs = [s[:-1] for s in usable]  # the held-out newest item stays out of training
    L = config.max_len
    # Training windows of L+1 items give L (input, next) pairs each; every transition once.
    train_windows = windows([w for s in train_seqs for w in _chunks(s, L + 1)], L + 1)
    held: list[int] = [
        int(i) for i in rng.choice(len(usable), min(config.eval_users, len(usable)), replace=False)
    ]
    held_inputs = torch.from_numpy(windows([train_seqs[i] for i in held], L)).to(device)
    held_targets = torch.tensor([usable[i][-1] for i in held], dtype=torch.long, device=device)

    model = SequenceModel(n_items, config, text).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_epoch, best_state, history = -1.0, 0, None, []
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(len(train_windows))[: config.windows_per_epoch]
        for lo in range(0, len(order), config.batch_size):
            batch = torch.from_numpy(train_windows[order[lo : lo + config.batch_size]]).to(device)
            inputs, targets = batch[:, :-1], batch[:, 1:]
            valid = (inputs > 0) & (targets > 0)
            items = model.item_vectors()
            h = model.hidden(inputs, items)[valid]
            pos = targets[valid]
            loss = _loss(config, items, h, pos, n_items, gen, device)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        score = _held_out(model, held_inputs, held_targets)
        history.append(score)
        if progress is not None:
            progress(epoch, score)
        if score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    model.to("cpu")
    report = TrainReport(epoch, best_epoch, best, time.perf_counter() - t0, len(usable), n_items, history)
    return model, report


def _loss(
    config: SequenceConfig,
    items: torch.Tensor,
    h: torch.Tensor,
    pos: torch.Tensor,
    n_items: int,
    gen: torch.Generator,
    device: str,
) -> torch.Tensor:
    if config.loss == "bce":
        # SASRec's paper: a dot product, one uniformly sampled negative per position.
        neg = torch.randint(1, n_items + 1, pos.shape, generator=gen).to(device)
        pos_logit = (h * items[pos]).sum(-1)
        neg_logit = (h * items[neg]).sum(-1)
        return F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()
    hn = F.normalize(h, dim=-1)
    if n_items <= FULL_SOFTMAX_ITEMS:
        logits = hn @ F.normalize(items[1:], dim=-1).T / config.temperature
        return F.cross_entropy(logits, pos - 1)
    # A large catalog: the positives against a shared uniform sample of negatives.
    sample = torch.randint(1, n_items + 1, (SAMPLED_NEGATIVES,), generator=gen).to(device)
    pos_logit = (hn * F.normalize(items[pos], dim=-1)).sum(-1, keepdim=True)
    neg_logit = hn @ F.normalize(items[sample], dim=-1).T
    neg_logit = neg_logit.masked_fill(sample.unsqueeze(0) == pos.unsqueeze(1), float("-inf"))
    return F.cross_entropy(torch.cat([pos_logit, neg_logit], 1) / config.temperature, torch.zeros_like(pos))


@torch.no_grad()
def _held_out(model: SequenceModel, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    if len(targets) == 0:
        return 0.0
    model.eval()
    table = model.item_vectors()
    # Ranked as the loss trains: cosines for the softmax, dot products for BCE (its paper's).
    cosine = model.config.loss != "bce"
    items = F.normalize(table, dim=-1) if cosine else table
    scores = []
    for lo in range(0, len(targets), 512):
        h = model.last(inputs[lo : lo + 512], table)
        s = (F.normalize(h, dim=-1) if cosine else h) @ items.T
        s[:, 0] = float("-inf")
        scores.append(_ndcg_at_10(s, targets[lo : lo + 512]))
    weights = [min(512, len(targets) - lo) for lo in range(0, len(targets), 512)]
    return float(np.average(scores, weights=weights))


def input_table(model: SequenceModel, extra_text: np.ndarray | None = None) -> torch.Tensor:
    """The input embeddings a forward pass reads: the model's items (row 0 padding, rows
    1..n_items), then one row per row of ``extra_text`` (index n_items + 1 onwards): items
    the model never saw, which get the projection of their text vector alone."""
    with torch.no_grad():
        items = model.item_vectors()
        if extra_text is None or len(extra_text) == 0:
            return items
        extra = torch.as_tensor(np.asarray(extra_text, dtype=np.float32))
        if model.text_dim and extra.shape[1] == model.text_dim:
            added = model.project(extra)
        else:  # trained without text (or another text dimension): nothing to read for them
            added = torch.zeros(len(extra), model.config.dim)
        return torch.cat([items, added])


@torch.no_grad()
def user_vectors(
    model: SequenceModel,
    sequences: Sequence[Sequence[int]],
    batch_size: int = 256,
    *,
    items: torch.Tensor | None = None,
) -> np.ndarray:
    """Unit-length sequence vectors, one per sequence (item indices, oldest first; the newest
    ``max_len`` are read).  An empty sequence gets a zero row.  ``items``: the input table
    (:func:`input_table`; default the model's own items)."""
    return user_vectors_with_attention(model, sequences, batch_size, items=items)[0]


@torch.no_grad()
def user_vectors_with_attention(
    model: SequenceModel,
    sequences: Sequence[Sequence[int]],
    batch_size: int = 256,
    *,
    items: torch.Tensor | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`user_vectors`, and for each sequence the last block's attention at its newest
    position over the items it read (oldest first; as long as the window read)."""
    model.eval()
    items = model.item_vectors() if items is None else items
    out = np.zeros((len(sequences), model.config.dim), dtype=np.float32)
    attention: list[np.ndarray] = []
    for lo in range(0, len(sequences), batch_size):
        chunk = sequences[lo : lo + batch_size]
        seq = torch.from_numpy(windows(chunk, model.config.max_len))
        h, weights = model.last_with_attention(seq, items)
        h = F.normalize(h, dim=-1) * (seq[:, :1] > 0)
        out[lo : lo + len(chunk)] = h.numpy()
        lengths = (seq > 0).sum(dim=1).tolist()
        attention += [weights[r, :n].numpy().astype(np.float32) for r, n in enumerate(lengths)]
    return out, attention


@torch.no_grad()
def item_vectors(model: SequenceModel) -> np.ndarray:
    """Unit-length sequence vectors of items 1..n_items (row i-1 is item index i)."""
    model.eval()
    return F.normalize(model.item_vectors()[1:], dim=-1).numpy()


@torch.no_grad()
def new_item_vectors(model: SequenceModel, text: np.ndarray) -> np.ndarray:
    """Unit-length sequence vectors of items the model was not trained with, from their text
    vectors alone (the projected text part of an input embedding).  Zero rows where the model
    has no text projection (it was trained without text, or with another text dimension)."""
    if not model.text_dim or text.shape[1] != model.text_dim:
        return np.zeros((len(text), model.config.dim), dtype=np.float32)
    return F.normalize(model.project(torch.as_tensor(text, dtype=torch.float32)), dim=-1).numpy()

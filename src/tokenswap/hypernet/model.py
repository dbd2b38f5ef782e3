"""The hypernetwork: source-token decompositions in, embeddings for the new tokens out.

Minixhofer, Ponti & Vulić, "Zero-Shot Tokenizer Transfer" (NeurIPS 2024, arXiv 2405.07883),
written from the paper in PyTorch. For every target token:

1. its decomposition into source tokens (:attr:`TokenPair.pieces`) is cut to a window of
   ``max_pieces`` pieces (the first ones; longer tokens are counted in :class:`PieceStats`);
2. each piece is the concatenation of the frozen source input embedding and, for untied
   models, the source output embedding, linearly projected to ``d_model``, plus a learned
   position embedding;
3. a small ``nn.TransformerEncoder`` reads the window (padding masked) and the first position
   is pooled;
4. separate heads predict the input embedding, the output embedding (untied models) and the
   output bias (models with one). Each prediction is *residual*: the mean of the source rows
   of *all* the token's pieces (FVT, not only the window) plus the head's output. The last
   layer of every head starts at zero, so an untrained hypernet reproduces the ``mean``
   init method exactly.

Tokens without pieces (``Provenance.FALLBACK``) read one learned "empty" vector and their
residual base is the mean of all source rows, as in ``mean``. Special and exact tokens are
predicted like any other (training ties them to their source rows with an auxiliary loss);
the ``hypernet`` init method copies special rows.

The source matrices are not part of the module: they are passed to :meth:`Hypernet.forward`,
so a saved hypernet holds only its own few million weights. It records the base model's name,
a sha256 of its embedding matrices (:func:`embedding_hash`) and a fingerprint: the base rows
of 256 evenly spaced token ids (:func:`base_fingerprint`). :meth:`Hypernet.check_base` accepts
the base itself and its fine-tuned variants - the paper applies a base model's hypernet to them
unchanged - recognised by the base's tokenizer and embedding rows still close to the
fingerprint's (mean cosine at least ``FINE_TUNED_SIMILARITY``); any other model is refused
unless ``allow_other_base``.

Not here: the tokenizer sampler (:mod:`.sampler`) and training (:mod:`.train`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tokenswap.errors import TokenswapError
from tokenswap.vocab.pair import TokenPair

WEIGHTS_FILE = "hypernet.safetensors"
CONFIG_FILE = "hypernet.json"
CHECKSUM_FILE = "hypernet.sha256"  # sha256sum format: the weights' and the config's hashes
FINGERPRINT_KEY = "base.fingerprint"  # in WEIGHTS_FILE, beside the module's own weights
FINGERPRINT_ROWS = 256
# Mean (centred) cosine between a model's rows and the base's above which the model counts as
# a fine-tuned variant. Measured on SmolLM2: after 48 steps of `tokenswap tune` (every weight,
# embedding lr 1e-3; the tune benchmark's de-original) 0.995; the same rows shuffled 0.000
# (uncentred: 0.997 and 0.43). To measure a model T against its base B:
# sb, st = (SourceEmbeddings.from_bundle(load_model(m)) for m in (B, T))
# fingerprint_similarity(base_fingerprint(sb), sb.input.shape[0], st)
FINE_TUNED_SIMILARITY = 0.5


@dataclass
class HypernetConfig:
    """Shape of a hypernet and the base model it was trained for (saved as ``hypernet.json``)."""

    hidden_size: int  # H of the base model's embeddings
    tied: bool = True  # base model ties input and output embeddings (no output head then)
    has_bias: bool = False  # base model's output layer has a bias (a bias head then)
    d_model: int = 256  # width of the hypernet's transformer
    n_layers: int = 3  # transformer encoder layers
    n_heads: int = 4  # attention heads per layer
    d_ff: int = 1024  # feed-forward width per layer
    max_pieces: int = 8  # window: source pieces per target token fed to the transformer
    dropout: float = 0.0  # dropout inside the transformer (0 keeps training deterministic)
    base_model: str = ""  # name/spec of the base model the hypernet was trained for
    base_hash: str = ""  # embedding_hash() of that base model's embedding matrices
    base_vocab_size: int = 0  # rows of that base model's embedding matrices
    base_vocab_hash: str = ""  # vocab_hash() of the first base_tokenizer_size tokens
    base_tokenizer_size: int = 0  # tokens of that base model's tokenizer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> HypernetConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class SourceEmbeddings:
    """The frozen source matrices a hypernet reads: input (V_s, H), output (V_s, H), bias (V_s,)."""

    input: torch.Tensor
    output: torch.Tensor | None = None  # None for tied models
    bias: torch.Tensor | None = None

    @classmethod
    def from_bundle(cls, bundle, device: torch.device | str | None = None) -> SourceEmbeddings:
        """The matrices of a :class:`~tokenswap.io.models.ModelBundle`, detached float32."""
        def prep(t):
            return None if t is None else t.detach().float().to(device or t.device)

        return cls(prep(bundle.input_embeddings()), prep(bundle.output_embeddings()),
                   prep(bundle.output_bias()))

    def hash(self) -> str:
        return embedding_hash(self.input, self.output, self.bias)


def embedding_hash(input: torch.Tensor, output: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> str:
    """sha256 (hex) of the float32 bytes of all embedding matrices, with their shapes.

    The whole matrices are hashed (SmolLM2's 113 MB take ~0.2 s); float32 is exact for
    bf16/fp16 weights, so a model and its up-cast copy hash alike.
    """
    h = hashlib.sha256()
    for name, t in (("input", input), ("output", output), ("bias", bias)):
        if t is None:
            continue
        data = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(data.shape)}".encode())
        h.update(data.numpy().tobytes())
    return h.hexdigest()


def vocab_hash(tokenizer, size: int) -> str:
    """sha256 (hex) of a tokenizer's tokens for ids ``0..size-1`` (tokens appended after them
    don't count)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    return hashlib.sha256("\0".join(str(t) for t in tokens).encode()).hexdigest()


def fingerprint_ids(vocab_size: int, rows: int = FINGERPRINT_ROWS) -> torch.Tensor:
    """``rows`` evenly spaced token ids of a vocabulary, ascending (all ids of a smaller one)."""
    return torch.unique(torch.linspace(0, vocab_size - 1, min(rows, vocab_size)).round().long())


def _rows(source: SourceEmbeddings, ids: torch.Tensor) -> torch.Tensor:
    """(len(ids), F) float32 CPU rows of the input (and output) embeddings, side by side."""
    return torch.cat([t.detach()[ids.to(t.device)].to("cpu", torch.float32)
                      for t in (source.input, source.output) if t is not None], dim=1)


def base_fingerprint(source: SourceEmbeddings) -> torch.Tensor:
    """(K, F) rows of the base embeddings at :func:`fingerprint_ids`, saved with a hypernet."""
    return _rows(source, fingerprint_ids(source.input.shape[0]))


def fingerprint_similarity(fingerprint: torch.Tensor, base_vocab_size: int,
                           source: SourceEmbeddings) -> float | None:
    """Mean cosine between the fingerprint's rows and ``source``'s rows of the same ids, both
    centred on the fingerprint's mean row.

    Ids beyond ``source``'s vocabulary are skipped (a fine-tuned copy may have been trimmed);
    None when no id is left or the row widths differ.
    """
    ids = fingerprint_ids(base_vocab_size)
    ids = ids[ids < source.input.shape[0]]  # ascending, so a prefix of the fingerprint
    rows = _rows(source, ids)
    if not len(ids) or rows.shape[1] != fingerprint.shape[1]:
        return None
    # Centred on the base's mean row: embedding matrices share a large common direction (two
    # random SmolLM2 rows have cosine 0.43 on average), which says nothing about the tokens.
    center = fingerprint.mean(0)
    return float(torch.nn.functional.cosine_similarity(fingerprint[: len(ids)] - center,
                                                       rows - center).mean())


@dataclass
class PieceStats:
    tokens: int  # target tokens
    truncated: int  # tokens with more pieces than the window (hypernet sees the first ones)
    empty: int  # tokens without pieces (fallback)


@dataclass
class PieceInputs:
    """A target vocabulary as hypernet input, built once per token pair.

    ``window`` (V_t, P) source ids (0 where padded), ``mask`` (V_t, P) True for real pieces,
    ``flat``/``owner`` every piece of every token (for the FVT mean over all pieces),
    ``empty`` (V_t,) True for tokens without pieces.
    """

    window: torch.Tensor
    mask: torch.Tensor
    flat: torch.Tensor
    owner: torch.Tensor
    empty: torch.Tensor
    stats: PieceStats

    def __len__(self) -> int:
        return self.window.shape[0]

    @classmethod
    def from_pair(cls, pair: TokenPair, max_pieces: int) -> PieceInputs:
        return cls.from_pieces(pair.pieces, max_pieces)

    @classmethod
    def from_pieces(cls, pieces: Sequence[Sequence[int]], max_pieces: int) -> PieceInputs:
        """The inputs of tokens given by their source pieces (one id tuple per token)."""
        n = len(pieces)
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=n)
        window = np.zeros((n, max_pieces), dtype=np.int64)
        for i, p in enumerate(pieces):
            if p:
                window[i, : min(len(p), max_pieces)] = p[:max_pieces]
        mask = np.arange(max_pieces)[None, :] < lengths[:, None]
        owner = torch.repeat_interleave(torch.arange(n), torch.from_numpy(lengths))
        flat = torch.tensor([i for p in pieces for i in p], dtype=torch.long)
        stats = PieceStats(tokens=n, truncated=int((lengths > max_pieces).sum()),
                           empty=int((lengths == 0).sum()))
        return cls(torch.from_numpy(window), torch.from_numpy(mask), flat, owner,
                   torch.from_numpy(lengths == 0), stats)

    def to(self, device: torch.device | str) -> PieceInputs:
        return PieceInputs(self.window.to(device), self.mask.to(device), self.flat.to(device),
                           self.owner.to(device), self.empty.to(device), self.stats)

    def select(self, rows: torch.Tensor) -> PieceInputs:
        """The inputs of target ids ``rows`` only (a chunk of the vocabulary)."""
        rows = rows.to(self.window.device)
        keep = torch.isin(self.owner, rows)
        remap = torch.full((len(self),), -1, dtype=torch.long, device=rows.device)
        remap[rows] = torch.arange(len(rows), device=rows.device)
        return PieceInputs(self.window[rows], self.mask[rows], self.flat[keep],
                           remap[self.owner[keep]], self.empty[rows], self.stats)


@dataclass
class Prediction:
    """Predicted matrices for a target vocabulary: input (V_t, H), output (V_t, H), bias (V_t,)."""

    input: torch.Tensor
    output: torch.Tensor | None = None
    bias: torch.Tensor | None = None


def _mean_of_pieces(source: torch.Tensor, inputs: PieceInputs) -> torch.Tensor:
    """FVT: mean of the source rows of every piece; tokens without pieces get the mean of all rows."""
    sums = torch.zeros((len(inputs), source.shape[1]), dtype=source.dtype, device=source.device)
    sums.index_add_(0, inputs.owner, source[inputs.flat])
    counts = torch.bincount(inputs.owner, minlength=len(inputs)).to(source.dtype)
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return torch.where(inputs.empty.unsqueeze(1), source.mean(0, keepdim=True), means)


class _Head(nn.Sequential):
    """LayerNorm -> Linear -> GELU -> Linear, the last layer zero so the residual starts at FVT."""

    def __init__(self, d_model: int, out: int) -> None:
        last = nn.Linear(d_model, out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(), last)


class Hypernet(nn.Module):
    """Predicts embeddings for any target vocabulary of one base model (see module docstring)."""

    # (K, F) base rows at fingerprint_ids(), or None (hypernets saved before fingerprints)
    base_fingerprint: torch.Tensor | None = None
    # how the checked model relates to the base, set by check_base ("base", ...)
    base_match: str | None = None

    def __init__(self, config: HypernetConfig) -> None:
        super().__init__()
        self.config = c = config
        features = c.hidden_size * (1 if c.tied else 2)
        self.project = nn.Linear(features, c.d_model)
        self.position = nn.Parameter(torch.zeros(c.max_pieces, c.d_model))
        nn.init.normal_(self.position, std=0.02)
        self.empty = nn.Parameter(torch.zeros(c.d_model))
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.input_head = _Head(c.d_model, c.hidden_size)
        self.output_head = None if c.tied else _Head(c.d_model, c.hidden_size)
        self.bias_head = _Head(c.d_model, 1) if c.has_bias else None

    @classmethod
    def for_source(cls, source: SourceEmbeddings, *, base_model: str = "", tokenizer=None,
                   **options) -> Hypernet:
        """A fresh hypernet shaped for ``source``, recording the base model's name, embedding
        hash and fingerprint, and (given its ``tokenizer``) a hash of its vocabulary."""
        size = source.input.shape[0]
        tokens = len(tokenizer) if tokenizer is not None else 0
        config = HypernetConfig(hidden_size=source.input.shape[1], tied=source.output is None,
                                has_bias=source.bias is not None, base_model=base_model,
                                base_hash=source.hash(), base_vocab_size=size,
                                base_vocab_hash=vocab_hash(tokenizer, tokens) if tokens else "",
                                base_tokenizer_size=tokens, **options)
        model = cls(config)
        model.base_fingerprint = base_fingerprint(source)
        return model

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_source(self, source: SourceEmbeddings) -> None:
        c = self.config
        if source.input.shape[1] != c.hidden_size:
            raise TokenswapError(f"hypernet expects hidden size {c.hidden_size}, the model has "
                                 f"{source.input.shape[1]}")
        if (source.output is None) != c.tied:
            raise TokenswapError("hypernet was trained for a " + ("tied" if c.tied else "untied")
                                 + " model; this model's embeddings are "
                                 + ("untied" if c.tied else "tied"))
        if (source.bias is not None) != c.has_bias:
            raise TokenswapError("hypernet and model disagree on the output bias")

    def _encode(self, feats: torch.Tensor, inputs: PieceInputs) -> torch.Tensor:
        """First-position output (N, D) of the encoder over each token's window.

        Tokens are grouped by their number of pieces and each group runs with its own window
        width: most tokens have one to three pieces, so padding all to ``max_pieces`` would
        waste most of the compute. Padded keys are masked, so the result does not depend on
        the width (up to float rounding).
        """
        width = inputs.mask.sum(1).clamp(min=1)  # (N,) empty tokens use one position
        outputs, order = [], []
        for w in torch.unique(width).tolist():
            rows = torch.nonzero(width == w).flatten()
            x = self.project(feats[inputs.window[rows, :w]]) + self.position[:w]  # (n, w, D)
            mask = inputs.mask[rows, :w].clone()
            empty = inputs.empty[rows]
            # A token without pieces reads the learned `empty` vector in its first position.
            first = torch.where(empty.unsqueeze(1), self.empty, x[:, 0])
            x = torch.cat([first.unsqueeze(1), x[:, 1:]], dim=1)
            mask[:, 0] |= empty
            outputs.append(self.encoder(x, src_key_padding_mask=~mask)[:, 0])
            order.append(rows)
        pooled = torch.cat(outputs)
        inverse = torch.empty_like(width)
        inverse[torch.cat(order)] = torch.arange(len(width), device=width.device)
        return pooled[inverse]

    def forward(self, inputs: PieceInputs, source: SourceEmbeddings) -> Prediction:
        """Embeddings for every token of ``inputs``: input/output (N, H), bias (N,).

        ``inputs`` and ``source`` must be on the hypernet's device.
        """
        self._check_source(source)
        feats = source.input if source.output is None else torch.cat(
            [source.input, source.output], dim=1)  # (V_s, F)
        pooled = self.norm(self._encode(feats, inputs))  # (N, D)
        pred = Prediction(_mean_of_pieces(source.input, inputs) + self.input_head(pooled))
        if self.output_head is not None:
            pred.output = _mean_of_pieces(source.output, inputs) + self.output_head(pooled)
        if self.bias_head is not None:
            base = _mean_of_pieces(source.bias.reshape(-1, 1), inputs)
            pred.bias = (base + self.bias_head(pooled)).reshape(-1)
        return pred

    @torch.no_grad()
    def predict(self, pair: TokenPair, source: SourceEmbeddings, *, chunk: int = 4096
                ) -> tuple[Prediction, PieceStats]:
        """Predict all matrices for ``pair``'s target vocabulary, in chunks, in eval mode."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        inputs = PieceInputs.from_pair(pair, self.config.max_pieces).to(device)
        source = SourceEmbeddings(*(None if t is None else t.detach().float().to(device)
                                    for t in (source.input, source.output, source.bias)))
        parts: list[Prediction] = []
        for start in range(0, len(inputs), chunk):
            rows = torch.arange(start, min(start + chunk, len(inputs)), device=device)
            parts.append(self(inputs.select(rows), source))
        self.train(was_training)

        def cat(name):
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else torch.cat(values)

        return Prediction(cat("input"), cat("output"), cat("bias")), inputs.stats

    # ------------------------------------------------------------------ base-model check

    def check_base(self, source: SourceEmbeddings, name: str, *, tokenizer=None,
                   allow_other_base: bool = False) -> str:
        """How ``source``'s model relates to the base; refuse a model that is not the base or
        a fine-tuned variant of it, unless ``allow_other_base``.

        The base has the same embedding hash (so does a copy whose transformer alone was
        fine-tuned). A variant whose embeddings were fine-tuned too keeps the base's tokenizer
        (``tokenizer``: its first ``base_tokenizer_size`` tokens hash alike; tokens appended
        after them are fine) and rows close to the base's at the fingerprint's ids: mean cosine at
        least ``FINE_TUNED_SIMILARITY``. The answer is also kept in :attr:`base_match`.
        """
        self._check_source(source)
        c = self.config
        base = c.base_model or "its base model"
        if not c.base_hash:
            match = "not recorded"
        elif source.hash() == c.base_hash:
            match = "base"
        else:
            similarity, why = None, "no fingerprint to compare"
            same_vocab = not c.base_vocab_hash or (
                tokenizer is not None and len(tokenizer) >= c.base_tokenizer_size
                and vocab_hash(tokenizer, c.base_tokenizer_size) == c.base_vocab_hash)
            if not same_vocab:
                why = "its tokenizer is not the base's"
            elif self.base_fingerprint is not None:
                similarity = fingerprint_similarity(
                    self.base_fingerprint, c.base_vocab_size or source.input.shape[0], source)
                if similarity is not None:
                    why = (f"embedding rows {similarity:.3f} similar, below "
                           f"{FINE_TUNED_SIMILARITY} for a fine-tuned variant")
            if similarity is not None and similarity >= FINE_TUNED_SIMILARITY:
                match = f"fine-tuned variant of {base} (embedding rows {similarity:.3f} similar)"
            elif allow_other_base:
                match = "another model (allowed)"
            else:
                raise TokenswapError(
                    f"hypernet {getattr(self, 'path', 'in memory')} was trained for {base} "
                    f"(embeddings {c.base_hash[:8]}), not for {name} ({why}); pass "
                    "--allow-other-base to apply it anyway")
        self.base_match = match
        return match

    # ------------------------------------------------------------------ save / load

    def save(self, out: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``hypernet.safetensors`` and ``hypernet.json`` into the directory ``out``.

        ``dtype=torch.bfloat16`` stores the weights in half the space (the shipped hypernets);
        :meth:`load` returns float32 parameters either way. Each file is written to a temporary
        name and renamed, so a crash leaves the old one; files get the umask's permissions.
        """
        from tokenswap.io.save import as_umask_allows

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.state_dict().items()}
        if self.base_fingerprint is not None:
            state[FINGERPRINT_KEY] = self.base_fingerprint.contiguous()
        tmp = out / f".{WEIGHTS_FILE}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        as_umask_allows(tmp)
        os.replace(tmp, out / WEIGHTS_FILE)
        tmp = out / f".{CONFIG_FILE}.tmp"
        tmp.write_text(self.config.to_json())
        os.replace(tmp, out / CONFIG_FILE)
        tmp = out / f".{CHECKSUM_FILE}.tmp"
        tmp.write_text("".join(f"{_sha256(out / name)}  {name}\n"
                               for name in (WEIGHTS_FILE, CONFIG_FILE)))
        os.replace(tmp, out / CHECKSUM_FILE)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: torch.device | str | None = None
             ) -> Hypernet:
        """Load a hypernet saved by :meth:`save` (a directory)."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise TokenswapError(f"hypernet {path} not found: expected {CONFIG_FILE} and "
                                 f"{WEIGHTS_FILE} in that directory (`tokenswap hypernet train`)")
        verify_checksums(path)
        try:
            config = HypernetConfig.from_json((path / CONFIG_FILE).read_text())
            state = load_file(str(path / WEIGHTS_FILE))
        except Exception as err:  # noqa: BLE001 - a corrupt file is the user's to fix
            raise TokenswapError(f"hypernet {path} is unreadable: {err}") from err
        model = cls(config)
        model.base_fingerprint = state.pop(FINGERPRINT_KEY, None)
        model.load_state_dict(state)
        model.path = str(path)
        return model.to(device) if device is not None else model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(path: Path) -> None:
    """Refuse a hypernet whose files differ from the hashes recorded when it was saved
    (``hypernet.sha256``); hypernets saved before checksums existed have none to check."""
    sums = path / CHECKSUM_FILE
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        expected, _, name = line.strip().partition("  ")
        if not name:
            continue
        if not (path / name).is_file() or _sha256(path / name) != expected:
            raise TokenswapError(f"hypernet {path}: {name} does not match its recorded sha256 "
                                 f"({CHECKSUM_FILE}); the file is damaged or was changed, "
                                 "reinstall tokenswap or retrain the hypernet")


def load_hypernet(path: str | os.PathLike, source: SourceEmbeddings, name: str, *,
                  tokenizer=None, allow_other_base: bool = False,
                  device: torch.device | str | None = None) -> Hypernet:
    """Load the hypernet at ``path`` and check it belongs to this model (:meth:`check_base`)."""
    model = Hypernet.load(path, device=device)
    model.check_base(source, name, tokenizer=tokenizer, allow_other_base=allow_other_base)
    return model


__all__ = ["FINE_TUNED_SIMILARITY", "Hypernet", "HypernetConfig", "PieceInputs", "PieceStats",
           "Prediction", "SourceEmbeddings", "base_fingerprint", "embedding_hash",
           "fingerprint_similarity", "load_hypernet", "vocab_hash"]

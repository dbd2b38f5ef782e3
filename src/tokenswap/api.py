"""The Python API; the CLI is a thin layer over these functions.

>>> import tokenswap
>>> result = tokenswap.transfer("default", "tok/", method="mean", out="model-new/")  # doctest: +SKIP
>>> report = tokenswap.evaluate(["default", "model-new/"], texts)                     # doctest: +SKIP

Orchestration lives here: loading, progress, timing, saving. The methods in
:mod:`tokenswap.init` and the metric in :mod:`tokenswap.evaluate` stay pure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from tokenswap import __version__
from tokenswap.errors import TokenswapError
from tokenswap.evaluate.bpb import BpbResult, bits_per_byte
from tokenswap.init import InitContext, get_method
from tokenswap.init.common import assert_filled
from tokenswap.init.registry import REQUIREMENTS
from tokenswap.io.corpus import Document, read_corpus
from tokenswap.io.dictionary import read_dictionary
from tokenswap.io.models import ModelBundle, load_model, load_tokenizer
from tokenswap.io.save import atomic_dir, check_output_dir, save_model
from tokenswap.surgery import install_embeddings
from tokenswap.vocab.extend import extend_tokenizer
from tokenswap.vocab.pair import Provenance, build_pair
from tokenswap.vocab.train import TokenizerKind, train_tokenizer

ModelLike = str | os.PathLike | ModelBundle | None
TokenizerLike = str | os.PathLike | PreTrainedTokenizerBase


@dataclass
class TransferStats:
    """What happened to the target vocabulary: how many tokens were exact, composed, fallback."""

    method: str
    source_vocab: int
    target_vocab: int
    pair: dict[str, int]  # counts from the token pair (before the method)
    input: dict[str, int]  # provenance counts of the input matrix as the method filled it
    output: dict[str, int] | None = None  # untied output matrix, if any
    seconds: float = 0.0
    hypernet_base: str | None = None  # how the model relates to the hypernet's base, if any

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TransferResult:
    bundle: ModelBundle
    stats: TransferStats
    out: Path | None = None
    undertrained: list[dict] | None = None  # new tokens that look under-trained (opt-in)


def _counts(provenance: np.ndarray) -> dict[str, int]:
    values = np.bincount(provenance.astype(np.int64), minlength=len(Provenance))
    return {p.name.lower(): int(values[p]) for p in Provenance}


def as_bundle(model: ModelLike, *, device: str | torch.device | None = None) -> ModelBundle:
    return model if isinstance(model, ModelBundle) else load_model(model, device=device)


def as_tokenizer(tokenizer: TokenizerLike) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    return load_tokenizer(tokenizer)


def corpus_texts(corpus: str | Sequence[str] | Sequence[Document] | None,
                 max_bytes: int | None = None) -> list[str] | None:
    """Texts from corpus specs (paths, globs, hf:...) or from already-read documents/strings."""
    if corpus is None:
        return None
    if isinstance(corpus, str):
        corpus = [corpus]
    items = list(corpus)
    if items and isinstance(items[0], Document):
        return [d.text for d in items]
    return [d.text for d in read_corpus([str(c) for c in items], max_bytes=max_bytes)]


def transfer(
    model: ModelLike = None,
    tokenizer: TokenizerLike | None = None,
    *,
    method: str = "mean",
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    corpus: str | Sequence[str] | None = None,
    donor: ModelLike = None,
    extend: bool = False,
    max_new_tokens: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    options: dict | None = None,
    source_corpus: str | Sequence[str] | None = None,
    dictionary: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    hypernet: str | os.PathLike | object | None = None,
    allow_other_base: bool = False,
    report_undertrained: int = 0,
) -> TransferResult:
    """Give ``model`` the vocabulary of ``tokenizer``, initialised by ``method``.

    ``model`` is any spec :func:`tokenswap.io.models.load_model` accepts (None = the packaged
    SmolLM2) or a loaded bundle; it is modified in place when a bundle is passed. With ``out``
    the result is saved atomically as a plain transformers model directory.

    With ``extend`` the source vocabulary is kept and up to ``max_new_tokens`` tokens of
    ``tokenizer`` are appended (see :mod:`tokenswap.vocab.extend`); otherwise the vocabulary
    is replaced.

    ``corpus`` (target-language text), ``donor`` (a model trained with the target tokenizer),
    ``source_corpus`` (text in the source model's language) and ``dictionary`` (a
    :func:`~tokenswap.io.dictionary.read_dictionary` spec or a list of word pairs) feed the
    methods that require them (``InitMethod.requires``); ``options`` holds method options.
    ``hypernet`` is a trained hypernet directory (or a loaded ``Hypernet``) for the
    ``hypernet`` method; it must have been trained for this model or a model this one was
    fine-tuned from (recognised by its embeddings; ``allow_other_base`` skips the check);
    ``result.stats.hypernet_base`` says which.
    With ``report_undertrained`` > 0, up to that many new tokens whose embeddings look like the
    source model's unused tokens are listed (:func:`tokenswap.audit.glitch.undertrained_new_tokens`)
    in ``result.undertrained`` and in the saved ``tokenswap.json``.
    """
    if tokenizer is None:
        raise TokenswapError("transfer needs a target tokenizer (--tokenizer)")
    init = get_method(method)
    if out is not None:
        check_output_dir(out, overwrite=overwrite)
    given = {"corpus": corpus, "donor": donor, "source_corpus": source_corpus,
             "dictionary": dictionary, "hypernet": hypernet}
    missing = [REQUIREMENTS[r] for r in init.requires if not given[r]]
    if missing:
        raise TokenswapError(f"method {init.name!r} needs " + " and ".join(missing))
    texts = corpus_texts(corpus)
    if init.needs_corpus and not texts:
        raise TokenswapError(f"method {init.name!r} needs target-language text: --corpus is empty")
    source_texts = corpus_texts(source_corpus)
    if isinstance(dictionary, (str, os.PathLike)):
        dictionary = read_dictionary(dictionary)

    bundle = as_bundle(model, device=device)
    target_tok = as_tokenizer(tokenizer)
    if extend:
        if donor is not None:
            raise TokenswapError("--donor and --extend do not combine: a donor matches the target "
                                 "tokenizer, an extended vocabulary does not")
        target_tok = extend_tokenizer(bundle.tokenizer, target_tok, max_new=max_new_tokens)
    donor_matrix = donor_embeddings(donor, target_tok) if donor is not None else None
    check_memory(len(target_tok), bundle.input_embeddings().shape[1],
                 matrices=1 if bundle.tied else 2)
    start = time.perf_counter()
    pair = build_pair(bundle.tokenizer, target_tok)
    source_in = bundle.input_embeddings().detach()
    source_out = bundle.output_embeddings()
    source_bias = bundle.output_bias()
    sources = {"input": source_in, "output": source_out, "bias": source_bias}
    hypernet_model = bind_hypernet(hypernet, bundle, allow_other_base=allow_other_base,
                                   device=device) if hypernet is not None else None

    shared = dict(options or {})  # one dict per transfer: methods cache aux models in it

    def run(matrix: torch.Tensor, which: str):
        ctx = InitContext(seed=seed, matrix=which, corpus=texts, device=device,
                          options=shared, source_tokenizer=bundle.tokenizer,
                          target_tokenizer=target_tok, donor=donor_matrix,
                          source_corpus=source_texts,
                          dictionary=list(dictionary) if dictionary is not None else None,
                          hypernet=hypernet_model, sources=sources)
        result = init.fn(matrix.detach().float(), pair, ctx)
        assert_filled(result.matrix, f"{init.name} {which} embeddings")
        return result

    new_in = run(source_in, "input")
    new_out = run(source_out, "output") if source_out is not None else None
    new_bias = run(source_bias.detach().reshape(-1, 1), "bias") if source_bias is not None else None
    id_map = {sid: tid for tid, sid in ((t, p[0]) for t, p in enumerate(pair.pieces)
                                        if pair.provenance[t] == Provenance.SPECIAL)}
    install_embeddings(
        bundle.model, new_in.matrix,
        new_out.matrix if new_out is not None else None,
        new_bias.matrix.reshape(-1) if new_bias is not None else None,
        tokenizer=target_tok, id_map=id_map,
    )
    undertrained = None
    if report_undertrained > 0:
        from tokenswap.audit.glitch import undertrained_new_tokens

        fresh = np.flatnonzero((pair.provenance != Provenance.EXACT)
                               & (pair.provenance != Provenance.SPECIAL))
        source_unemb = source_in if source_out is None else source_out.detach()
        new_unemb = new_in.matrix if new_out is None else new_out.matrix
        undertrained = undertrained_new_tokens(source_unemb, bundle.tokenizer, new_unemb, fresh,
                                               target_tok, top=report_undertrained)
    bundle.tokenizer = target_tok
    stats = TransferStats(
        method=init.name, source_vocab=int(source_in.shape[0]), target_vocab=len(pair),
        pair=pair.counts(), input=_counts(new_in.provenance),
        output=_counts(new_out.provenance) if new_out is not None else None,
        seconds=time.perf_counter() - start,
        hypernet_base=hypernet_model.base_match if hypernet_model is not None else None,
    )
    saved = save_model(bundle, out, overwrite=overwrite, provenance={
        "tokenswap": __version__, "source_model": bundle.spec, "method": init.name,
        "seed": seed, "extend": extend, "stats": stats.to_dict(),
        **({"hypernet": str(getattr(hypernet_model, "path", "in memory"))}
           if hypernet_model is not None else {}),
        **({"undertrained": undertrained} if undertrained is not None else {})}
    ) if out is not None else None
    return TransferResult(bundle=bundle, stats=stats, out=saved, undertrained=undertrained)


def bind_hypernet(hypernet, bundle: ModelBundle, *, allow_other_base: bool = False,
                  device: str | torch.device | None = None):
    """Load a hypernet (path) or take a loaded one, and check it was trained for ``bundle``."""
    from tokenswap.hypernet.model import Hypernet, SourceEmbeddings, load_hypernet

    source = SourceEmbeddings.from_bundle(bundle)
    if isinstance(hypernet, Hypernet):
        hypernet.check_base(source, bundle.name, tokenizer=bundle.tokenizer,
                            allow_other_base=allow_other_base)
        return hypernet
    return load_hypernet(hypernet, source, bundle.name, tokenizer=bundle.tokenizer,
                         allow_other_base=allow_other_base, device=device)


def hypernet_train(
    model: ModelLike,
    corpus: str | Sequence[str] | Sequence[Document],
    out: str | os.PathLike,
    *,
    eval_corpus: str | Sequence[str] | Sequence[Document] | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    **options,
):
    """Train a zero-shot tokenizer-transfer hypernet for ``model`` on ``corpus`` into ``out``.

    ``options`` are :class:`tokenswap.hypernet.train.TrainConfig` fields (``steps``,
    ``minutes``, ``batch_size``, ...). Returns a :class:`~tokenswap.hypernet.train.TrainResult`.
    """
    from tokenswap.hypernet.train import train_hypernet

    texts = corpus_texts(corpus, max_bytes=max_bytes)
    if not texts:
        raise TokenswapError("no text to train the hypernet on; pass --corpus")
    eval_texts = corpus_texts(eval_corpus) if eval_corpus is not None else None
    bundle = as_bundle(model, device=device)
    return train_hypernet(bundle, texts, out, eval_texts=eval_texts, device=device,
                          resume=resume, progress=progress, **options)



def tune(
    model: ModelLike,
    corpus: str | Sequence[str] | Sequence[Document] | None,
    out: str | os.PathLike,
    *,
    eval_corpus: str | Sequence[str] | Sequence[Document] | None = None,
    texts: Sequence[str] | None = None,
    eval_texts: Sequence[str] | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    callback=None,
    **options,
):
    """Continue training ``model`` (e.g. a transferred one) on ``corpus``; save it to ``out``.

    ``options`` are :class:`tokenswap.tuning.config.TuneConfig` fields (``steps``, ``minutes``,
    ``stage``, ``precision``, ``batch_size``, ...). ``eval_corpus`` is scored in bits per byte
    during training (as :func:`evaluate` scores it). In Python, ``texts`` and ``eval_texts``
    give the text directly instead of corpus specs. Returns a
    :class:`~tokenswap.tuning.loop.TuneResult`; ``out`` is a plain transformers model directory
    with the model's tokenizer, plus ``best/``, ``checkpoint/`` and ``log.jsonl``.
    """
    from tokenswap.io.checkpoint import prepare_out
    from tokenswap.tuning import TuneConfig, tune_model

    TuneConfig.from_options(**options)  # bad options and outputs fail before any model loads
    if os.environ.get("RANK", "0") == "0":
        prepare_out(Path(out), resume)
    if texts is None:
        texts = corpus_texts(corpus, max_bytes=max_bytes)
    if not texts:
        raise TokenswapError("no text to tune on; pass --corpus")
    if eval_texts is None and eval_corpus is not None:
        eval_texts = corpus_texts(eval_corpus)
    bundle = as_bundle(model, device=device)
    provenance = {"tokenswap": __version__, "tuned_from": bundle.spec}
    if bundle.path is not None and (bundle.path / "tokenswap.json").is_file():
        provenance["transfer"] = json.loads((bundle.path / "tokenswap.json").read_text())
    return tune_model(bundle, texts, out, eval_texts=eval_texts, device=device, resume=resume,
                      progress=progress, callback=callback, provenance=provenance, **options)

def available_memory() -> int:
    """Bytes of memory available to this process now."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(vocab_size: int, hidden: int, *, matrices: int) -> None:
    """Refuse a target vocabulary whose new matrices cannot fit in memory.

    A transfer holds, per matrix, the float32 target matrix, the method's working copy and the
    model's new parameter: about three (V_t, H) float32 tensors.
    """
    need = 3 * matrices * vocab_size * hidden * 4
    free = available_memory()
    if need > free:
        raise TokenswapError(
            f"a {vocab_size:,}-token vocabulary needs about {need / 2**30:.1f} GiB for its "
            f"embeddings but only {free / 2**30:.1f} GiB is free; use a smaller vocabulary"
        )


def donor_embeddings(donor: ModelLike, target_tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Input embeddings of a donor model, one row per target token id: (V_t, H_donor).

    The donor must have been trained with the target tokenizer: same vocabulary (token strings
    and ids). Padded embedding rows beyond the tokenizer (common: vocab rounded up to a multiple
    of 64) are dropped; a tokenizer with more tokens than embedding rows is an error.
    """
    bundle = as_bundle(donor)
    donor_vocab = bundle.tokenizer.get_vocab()
    target_vocab = target_tokenizer.get_vocab()
    if donor_vocab != target_vocab:
        differ = sum(1 for k, v in target_vocab.items() if donor_vocab.get(k) != v)
        raise TokenswapError(
            f"donor {bundle.spec} was not trained with the target tokenizer ({differ:,} of "
            f"{len(target_vocab):,} target tokens differ); pass the donor's own tokenizer as --tokenizer"
        )
    matrix = bundle.input_embeddings().detach().float()
    n = len(target_tokenizer)
    if matrix.shape[0] < n:
        raise TokenswapError(f"donor {bundle.spec} has {matrix.shape[0]:,} embedding rows for "
                             f"{n:,} tokens; its checkpoint does not match its tokenizer")
    return matrix[:n].clone()


# ----------------------------------------------------------------------------- evaluation


@dataclass
class EvalRow:
    name: str
    vocab_size: int
    result: BpbResult
    seconds: float

    def to_dict(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "seconds": self.seconds,
                **self.result.to_dict()}


@dataclass
class EvalReport:
    """Rows scored on exactly the same bytes; the first row is the baseline for ratios."""

    rows: list[EvalRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        base = self.rows[0].result if self.rows else None
        rows = []
        for row in self.rows:
            d = row.to_dict()
            if base is not None:
                d["bpb_ratio"] = row.result.bits_per_byte / base.bits_per_byte
                d["tokens_ratio"] = row.result.tokens_per_byte / base.tokens_per_byte
            rows.append(d)
        return {"rows": rows}

    def write_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def evaluate(
    models: Sequence[ModelLike],
    texts: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    max_length: int = 1024,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> EvalReport:
    """Bits per byte and tokens per byte of every model on the same ``texts``.

    Models are loaded one at a time (and released) so that memory holds one model.
    """
    if not texts:
        raise TokenswapError("no text to evaluate on; pass --text with held-out files")
    report = EvalReport()
    for i, spec in enumerate(models):
        bundle = as_bundle(spec, device=device)
        if dtype is not None:
            bundle.model.to(dtype)
        name = names[i] if names else bundle.name
        start = time.perf_counter()
        result = bits_per_byte(bundle.model, bundle.tokenizer, texts, max_length=max_length,
                               batch_size=batch_size, device=device,
                               progress=name if progress else False)
        report.rows.append(EvalRow(name=name, vocab_size=len(bundle.tokenizer), result=result,
                                   seconds=time.perf_counter() - start))
        if not isinstance(spec, ModelBundle):
            del bundle
    return report


def tokenizer_train(
    corpus: str | Sequence[str] | Sequence[Document] | None,
    vocab_size: int,
    *,
    texts: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    kind: TokenizerKind | str = TokenizerKind.BPE,
    like: TokenizerLike | None = None,
    overwrite: bool = False,
    max_bytes: int | None = None,
    progress: bool = False,
) -> PreTrainedTokenizerBase:
    """Train a target tokenizer carrying ``like``'s special tokens and chat template.

    The text comes from ``corpus`` (specs such as paths and globs, or read documents) or, in
    Python, directly from ``texts``.
    """
    if out is not None:
        check_output_dir(out, overwrite=overwrite)
    if texts is None:
        texts = corpus_texts(corpus, max_bytes=max_bytes)
    if not texts:
        raise TokenswapError("no text to train a tokenizer on; pass --corpus")
    like_tok = as_tokenizer(like) if like is not None else None
    tok = train_tokenizer(texts, vocab_size, kind=kind, like=like_tok, progress=progress)
    if out is not None:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            tok.save_pretrained(tmp)
    return tok


# --- tokenswap audit: tokenizer metrics, parity, report (src/tokenswap/audit) ---------------


def _tokenizer_label(spec: TokenizerLike) -> str:
    if isinstance(spec, PreTrainedTokenizerBase):
        return Path(str(getattr(spec, "name_or_path", "") or "tokenizer")).name or "tokenizer"
    text = str(spec)
    path = Path(text)
    name = path.stem if path.suffix in (".json", ".model", ".gguf") else path.name or text
    if name in ("model", "tokenizer", "") and path.parent.name:
        name = path.parent.name
    return name


def audit(
    tokenizers: Sequence[TokenizerLike],
    corpora: dict,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    names: Sequence[str] | None = None,
    reference: str = "en",
    max_bytes: int | None = None,
    examples: bool = True,
    progress=None,
):
    """Measure what each tokenizer does to each corpus; parity against ``reference``.

    ``tokenizers`` are tokenizer paths, model specs (``"default"``, a HF dir, a ``.gguf``: only
    the tokenizer is used) or loaded tokenizers. ``corpora`` maps a language or domain name to
    corpus specs (files, directories, globs; HTML is reduced to text), to read documents or to
    a :class:`~tokenswap.audit.parity.ParallelCorpus`; ``max_bytes`` caps each corpus. Parity
    is computed for the corpora that share files (chapters) with ``reference`` (see
    :mod:`tokenswap.audit.parity`). With ``out`` the JSON, the HTML report and the plots are
    written there atomically. ``progress`` is called with a line of text per step.
    Returns an :class:`~tokenswap.audit.report.AuditReport`.
    """
    from tokenswap.audit.metrics import (
        METRICS,
        TokenizerInfo,
        corpus_metrics,
        encode_corpus,
        vocab_metrics,
    )
    from tokenswap.audit.parity import ParallelCorpus, pair_keys, parity, read_language
    from tokenswap.audit.report import AuditReport, pick_sample, segment

    if not tokenizers:
        raise TokenswapError("no tokenizer to audit; pass at least one tokenizer or model spec")
    if not corpora:
        raise TokenswapError("no corpus to audit on; pass --corpus NAME=PATH")
    if names is not None and len(names) != len(tokenizers):
        raise TokenswapError(f"{len(names)} names for {len(tokenizers)} tokenizers")
    if out is not None:
        check_output_dir(out, overwrite=overwrite)
    say = progress or (lambda line: None)

    parallel: list[ParallelCorpus] = []
    for name, value in corpora.items():
        if isinstance(value, ParallelCorpus):
            parallel.append(value)
        elif isinstance(value, Sequence) and value and isinstance(value[0], Document):
            docs = list(value)
            parallel.append(ParallelCorpus(name, docs, pair_keys([d.source for d in docs], name)))
        else:
            parallel.append(read_language(name, value, max_bytes=max_bytes))
        say(f"read {name}: {len(parallel[-1].docs)} documents, {parallel[-1].n_bytes:,} bytes")

    labels = list(names) if names is not None else [_tokenizer_label(t) for t in tokenizers]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}#{seen[label]}"

    report = AuditReport(metrics=[m.describe() for m in METRICS.values()])
    samples = {c.lang: pick_sample(c.texts) for c in parallel} if examples else {}
    report.examples = [{"corpus": lang, "text": text, "pieces": {}, "tokens": {}, "unk": {}}
                       for lang, text in samples.items()]
    counts: dict[str, dict] = {}
    encode_seconds = 0.0
    for spec, label in zip(tokenizers, labels, strict=True):
        tokenizer = as_tokenizer(spec)
        info = TokenizerInfo.from_tokenizer(tokenizer, label, spec=None if isinstance(
            spec, PreTrainedTokenizerBase) else str(spec))
        start = time.perf_counter()
        vocab = vocab_metrics(info)
        report.tokenizers.append({"name": label, "spec": info.spec,
                                  "family": info.vocab.family.value, "vocab": vocab,
                                  "seconds": time.perf_counter() - start})
        say(f"{label}: {info.size:,} tokens, {int(vocab['unreachable'])} unreachable")
        counts[label] = {}
        for corpus in parallel:
            enc = encode_corpus(info, corpus.texts)
            begin = time.perf_counter()
            values = corpus_metrics(enc)
            seconds = enc.seconds + time.perf_counter() - begin
            encode_seconds += seconds
            report.rows.append({"tokenizer": label, "corpus": corpus.lang, "metrics": values,
                                "tokens": enc.n_tokens, "bytes": enc.n_bytes,
                                "seconds": seconds, "mb_per_s": enc.n_bytes / 1e6 / seconds})
            if len(report.corpora) < len(parallel):
                report.corpora.append({
                    "name": corpus.lang, "docs": enc.n_docs, "bytes": enc.n_bytes,
                    "chars": enc.n_chars, "words": enc.n_words,
                    "chars_per_word": enc.chars_per_word,
                    "word_length_per_char": enc.word_length_per_char,
                    "unit": "word" if enc.spaced else "character"})
            counts[label][corpus.lang] = (corpus.keys, enc.doc_tokens.tolist())
            say(f"{label} on {corpus.lang}: {values['tokens_per_byte']:.4f} tokens/byte, "
                f"{enc.n_bytes / 1e6 / seconds:.2f} MB/s")
            del enc
        for example in report.examples:
            pieces = segment(info.backend, example["text"])
            example["pieces"][label] = pieces
            ids = sorted({i for p in pieces for i in p["ids"]})
            example["tokens"][label] = {str(i): info.backend.id_to_token(i) for i in ids}
            example["unk"][label] = info.unk_id

    if any(c.lang == reference for c in parallel):
        report.parity = {"reference": reference, "ratios": {
            label: {lang: p.to_dict() for lang, p in parity(by_lang, reference).items()}
            for label, by_lang in counts.items()}}
    total = sum(c["bytes"] for c in report.corpora)
    report.timing = {"encode_seconds": encode_seconds, "bytes": total,
                     "mb_per_s": total * len(labels) / 1e6 / max(encode_seconds, 1e-9)}
    if out is not None:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            report.write(tmp)
    return report
# --- end of tokenswap audit -----------------------------------------------------------------


# --- tokenswap glitch and mixture (src/tokenswap/audit/glitch.py, mixture.py) ---------------


def glitch(
    model: ModelLike = None,
    *,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    max_verify: int = 200,
    threshold: float = 0.01,
    batch_size: int = 16,
    controls: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
):
    """Under-trained token candidates of ``model`` with scores, the top ``max_verify`` verified
    with repeat prompts (:func:`tokenswap.audit.glitch.find_glitch_tokens`).

    With ``out``, ``glitch.json`` and ``glitch.md`` are written there atomically. Returns a
    :class:`~tokenswap.audit.glitch.GlitchResult`.
    """
    from tokenswap.audit.glitch import find_glitch_tokens

    if out is not None:
        check_output_dir(out, overwrite=overwrite)
    bundle = as_bundle(model, device=device)
    result = find_glitch_tokens(bundle, max_verify=max_verify, threshold=threshold,
                                batch_size=batch_size, controls=controls, progress=progress)
    if out is not None:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            (tmp / "glitch.json").write_text(json.dumps(result.to_dict(), indent=2,
                                                        ensure_ascii=False) + "\n")
            (tmp / "glitch.md").write_text(result.to_markdown())
    return result


def mixture(
    tokenizer: TokenizerLike,
    samples: dict[str, str | Sequence[str] | Sequence[Document]],
    *,
    max_bytes: int | None = 2_000_000,
    steps: int = 3000,
    competitors: int = 100,
    slack: str = "paper",
    progress: bool = False,
):
    """Infer the proportions of the categories in ``samples`` in ``tokenizer``'s training data.

    ``samples`` maps a category name to corpus specs (paths, globs) or read documents; each is
    read up to ``max_bytes``. Raw strings: call
    :func:`tokenswap.audit.mixture.infer_mixture` directly.
    """
    from tokenswap.audit.mixture import infer_mixture

    texts = {name: corpus_texts(spec, max_bytes=max_bytes) or [] for name, spec in samples.items()}
    return infer_mixture(as_tokenizer(tokenizer), texts, steps=steps, competitors=competitors,
                         slack=slack, progress=progress)
# --- end of tokenswap glitch and mixture -----------------------------------------------------

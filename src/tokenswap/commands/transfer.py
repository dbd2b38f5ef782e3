"""``tokenswap transfer``: give a model the vocabulary of another tokenizer.

Loads the source model and the target tokenizer, pairs the two vocabularies
(:func:`tokenswap.vocab.pair.build_pair`), fills every matrix of the new vocabulary with an init
method from :mod:`tokenswap.init`, installs it (:mod:`tokenswap.surgery`) and saves a plain
transformers model directory atomically. Methods stay pure; loading, timing and saving are here.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenswap.config import option
from tokenswap.errors import TokenswapError


@dataclass
class Config:
    tokenizer: str = option(help="Target tokenizer: dir, tokenizer.json, .model, a model spec, "
                                 "or 'bytes' (256 byte tokens plus the source's special "
                                 "tokens); in Python also a loaded tokenizer.", short="-t")
    out: Path | None = option(None, "Output model directory.", short="-o", required=True)
    model: str = option("default", "Source model: HF dir, hub id, .gguf file, or 'default' "
                                   "(SmolLM2-135M); in Python also a loaded ModelBundle.",
                        short="-m")
    method: str = option("mean", "Init method; see `tokenswap methods`.")
    corpus: list[str] | None = option(None, "Target-language text for methods that need it "
                                            "(files, dirs, globs).")
    donor: str | None = option(None, "A model trained with the target tokenizer, for "
                                     "donor-based methods (omp).")
    source_corpus: list[str] | None = option(None, "Text in the source model's language "
                                                   "(wechsel).")
    dictionary: str | None = option(None, "Bilingual dictionary (wechsel): freedict:deu-eng, a "
                                          "dictd .dict.dz or word pairs.")
    options: dict[str, Any] = option(default_factory=dict, help=(
        "Method option KEY=VALUE, e.g. -O focus_temperature=0.1 (repeatable; "
        "`tokenswap methods` lists each method's options)."), flag="--option", short="-O")
    extend: bool = option(False, "Keep the source vocabulary and append the target's new "
                                 "tokens.")
    max_new_tokens: int | None = option(None, "With --extend: append at most this many tokens "
                                              "(most frequent first).")
    hypernet: str | None = option(None, "Hypernet for --method hypernet: a directory from "
                                        "`tokenswap hypernet train`, or 'default' (the one "
                                        "shipped for the model; also used when this is "
                                        "left out).")
    allow_other_base: bool = option(False, "Apply --hypernet to a model that is neither its "
                                           "base nor a recognised fine-tuned variant of it.")
    report_undertrained: int = option(0, "List up to N new tokens whose embeddings look like "
                                         "the source model's unused tokens (also saved in "
                                         "tokenswap.json); 0 = off.")
    seed: int = option(0, "Random seed.")
    overwrite: bool = option(False, "Replace an existing --out.")
    device: str | None = option(None, "torch device, e.g. cpu, cuda, cuda:1.")


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
    bundle: Any  # the ModelBundle with the new vocabulary, in memory
    stats: TransferStats
    out: Path | None = None
    undertrained: list[dict] | None = None  # new tokens that look under-trained (opt-in)


def _counts(provenance) -> dict[str, int]:
    import numpy as np

    from tokenswap.vocab.pair import Provenance

    values = np.bincount(provenance.astype(np.int64), minlength=len(Provenance))
    return {p.name.lower(): int(values[p]) for p in Provenance}


def run(cfg: Config) -> TransferResult:
    """Give ``cfg.model`` the vocabulary of ``cfg.tokenizer``, initialised by ``cfg.method``.

    A loaded bundle passed as ``model`` is modified in place. With ``out`` the result is saved
    atomically as a plain transformers model directory.

    With ``extend`` the source vocabulary is kept and up to ``max_new_tokens`` tokens of the
    tokenizer are appended (:mod:`tokenswap.vocab.extend`); otherwise it is replaced.
    ``hypernet`` must have been trained for this model or one it was fine-tuned from
    (recognised by its embeddings; ``allow_other_base`` skips the check).
    """
    import numpy as np

    from tokenswap import __version__
    from tokenswap.config import to_dict
    from tokenswap.init import InitContext, get_method, resolve_options
    from tokenswap.init.common import assert_filled
    from tokenswap.init.registry import REQUIREMENTS
    from tokenswap.io.corpus import corpus_texts
    from tokenswap.io.dictionary import read_dictionary
    from tokenswap.io.models import as_bundle, as_tokenizer
    from tokenswap.io.save import check_output_dir, save_model
    from tokenswap.surgery import install_embeddings
    from tokenswap.vocab.extend import extend_tokenizer
    from tokenswap.vocab.pair import Provenance, build_pair

    if cfg.tokenizer is None:
        raise TokenswapError("transfer needs a target tokenizer (--tokenizer)")
    init = get_method(cfg.method)
    init_options = resolve_options(init, cfg.options)  # bad options fail before any model loads
    if cfg.out is not None:
        check_output_dir(cfg.out, overwrite=cfg.overwrite)
    from tokenswap.hypernet.shipped import DEFAULT, available

    hypernet = cfg.hypernet
    if hypernet is None and "hypernet" in init.requires and available():
        hypernet = DEFAULT  # the shipped one, if it was trained for this model
    given = {"corpus": cfg.corpus, "donor": cfg.donor, "source_corpus": cfg.source_corpus,
             "dictionary": cfg.dictionary, "hypernet": hypernet}
    missing = [REQUIREMENTS[r] for r in init.requires if not given[r]]
    if missing:
        raise TokenswapError(f"method {init.name!r} needs " + " and ".join(missing))
    texts = corpus_texts(cfg.corpus)
    if init.needs_corpus and not texts:
        raise TokenswapError(f"method {init.name!r} needs target-language text: --corpus is empty")
    source_texts = corpus_texts(cfg.source_corpus)
    dictionary = cfg.dictionary
    if isinstance(dictionary, (str, os.PathLike)):
        dictionary = read_dictionary(dictionary)

    bundle = as_bundle(cfg.model, device=cfg.device)
    target_tok = as_tokenizer(cfg.tokenizer, like=bundle.tokenizer)
    if cfg.extend:
        if cfg.donor is not None:
            raise TokenswapError("--donor and --extend do not combine: a donor matches the target "
                                 "tokenizer, an extended vocabulary does not")
        target_tok = extend_tokenizer(bundle.tokenizer, target_tok, max_new=cfg.max_new_tokens)
    donor_matrix = donor_embeddings(cfg.donor, target_tok) if cfg.donor is not None else None
    check_memory(len(target_tok), bundle.input_embeddings().shape[1],
                 matrices=1 if bundle.tied else 2)
    start = time.perf_counter()
    pair = build_pair(bundle.tokenizer, target_tok)
    source_in = bundle.input_embeddings().detach()
    source_out = bundle.output_embeddings()
    source_bias = bundle.output_bias()
    sources = {"input": source_in, "output": source_out, "bias": source_bias}
    hypernet_model = bind_hypernet(hypernet, bundle, allow_other_base=cfg.allow_other_base,
                                   device=cfg.device) if hypernet is not None else None

    cache: dict = {}  # one per transfer: the input, output and bias calls share trained models

    def fill(matrix, which: str):
        ctx = InitContext(seed=cfg.seed, matrix=which, corpus=texts, device=cfg.device,
                          options=init_options, cache=cache, source_tokenizer=bundle.tokenizer,
                          target_tokenizer=target_tok, donor=donor_matrix,
                          source_corpus=source_texts,
                          dictionary=list(dictionary) if dictionary is not None else None,
                          hypernet=hypernet_model, sources=sources)
        result = init.fn(matrix.detach().float(), pair, ctx)
        assert_filled(result.matrix, f"{init.name} {which} embeddings")
        return result

    new_in = fill(source_in, "input")
    new_out = fill(source_out, "output") if source_out is not None else None
    new_bias = fill(source_bias.detach().reshape(-1, 1), "bias") if source_bias is not None else None
    id_map = {sid: tid for tid, sid in ((t, p[0]) for t, p in enumerate(pair.pieces)
                                        if pair.provenance[t] == Provenance.SPECIAL)}
    install_embeddings(
        bundle.model, new_in.matrix,
        new_out.matrix if new_out is not None else None,
        new_bias.matrix.reshape(-1) if new_bias is not None else None,
        tokenizer=target_tok, id_map=id_map,
    )
    undertrained = None
    if cfg.report_undertrained > 0:
        from tokenswap.audit.glitch import undertrained_new_tokens

        fresh = np.flatnonzero((pair.provenance != Provenance.EXACT)
                               & (pair.provenance != Provenance.SPECIAL))
        source_unemb = source_in if source_out is None else source_out.detach()
        new_unemb = new_in.matrix if new_out is None else new_out.matrix
        undertrained = undertrained_new_tokens(source_unemb, bundle.tokenizer, new_unemb, fresh,
                                               target_tok, top=cfg.report_undertrained)
    bundle.tokenizer = target_tok
    stats = TransferStats(
        method=init.name, source_vocab=int(source_in.shape[0]), target_vocab=len(pair),
        pair=pair.counts(), input=_counts(new_in.provenance),
        output=_counts(new_out.provenance) if new_out is not None else None,
        seconds=time.perf_counter() - start,
        hypernet_base=hypernet_model.base_match if hypernet_model is not None else None,
    )
    saved = save_model(bundle, cfg.out, overwrite=cfg.overwrite, provenance={
        "tokenswap": __version__, "source_model": bundle.spec, "method": init.name,
        "options": to_dict(init_options), "seed": cfg.seed, "extend": cfg.extend, "stats": stats.to_dict(),
        **({"hypernet": str(getattr(hypernet_model, "path", "in memory"))}
           if hypernet_model is not None else {}),
        **({"undertrained": undertrained} if undertrained is not None else {})}
    ) if cfg.out is not None else None
    return TransferResult(bundle=bundle, stats=stats, out=saved, undertrained=undertrained)


def show(result: TransferResult, cfg: Config, console) -> None:
    from tokenswap.vocab.pair import describe

    s = result.stats
    console.print(f"{s.method}: {s.source_vocab:,} -> {s.target_vocab:,} tokens in {s.seconds:.1f} s")
    console.print(f"  input:  {describe({**s.input, 'total': s.target_vocab})}")
    if s.output is not None:
        console.print(f"  output: {describe({**s.output, 'total': s.target_vocab})}")
    if s.hypernet_base is not None:
        console.print(f"  hypernet: model is {s.hypernet_base}", highlight=False)
    if result.undertrained is not None:
        console.print(f"  {len(result.undertrained)} new tokens look under-trained"
                      + (":" if result.undertrained else ""))
        for t in result.undertrained:
            console.print(f"    {t['id']:>7} {t['text']!r:<24} similarity {t['similarity']:.3f}",
                          highlight=False, markup=False)
    console.print(f"saved to {result.out}")


# ----------------------------------------------------------------------------- pieces


def bind_hypernet(hypernet, bundle, *, allow_other_base: bool = False, device=None):
    """Load a hypernet (path, or ``"default"``: the shipped one) or take a loaded one, and
    check it was trained for ``bundle``."""
    from tokenswap.hypernet.model import Hypernet, SourceEmbeddings, load_hypernet
    from tokenswap.hypernet.shipped import DEFAULT, for_model

    if isinstance(hypernet, str) and hypernet == DEFAULT and not Path(hypernet).exists():
        return for_model(bundle, device=device)
    source = SourceEmbeddings.from_bundle(bundle)
    if isinstance(hypernet, Hypernet):
        hypernet.check_base(source, bundle.name, tokenizer=bundle.tokenizer,
                            allow_other_base=allow_other_base)
        return hypernet
    return load_hypernet(hypernet, source, bundle.name, tokenizer=bundle.tokenizer,
                         allow_other_base=allow_other_base, device=device)


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


def donor_embeddings(donor, target_tokenizer):
    """Input embeddings of a donor model, one row per target token id: (V_t, H_donor).

    The donor must have been trained with the target tokenizer: same vocabulary (token strings
    and ids). Padded embedding rows beyond the tokenizer (common: vocab rounded up to a multiple
    of 64) are dropped; a tokenizer with more tokens than embedding rows is an error.
    """
    from tokenswap.io.models import as_bundle

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

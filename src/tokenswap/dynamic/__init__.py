"""Dynamic tokenization: per-batch merges, embeddings for the merged tokens, prefill with them.

Feher, Vulić & Minixhofer, "Retrofitting (Large) Language Models with Dynamic Tokenization"
(arXiv 2411.18553). The model keeps its tokenizer; a batch's frequent subword sequences become
single tokens (:mod:`.merge`), whose input embeddings come from a zero-shot hypernet or an init
method, cached by their bytes (:mod:`.embed`); the merged context is prefilled through
``inputs_embeds`` and what follows is scored or generated with the base tokenizer
(:mod:`.prefill`).

Generation over a large vocabulary (the paper's section 5): the base vocabulary plus runs of
base tokens seen over a corpus (:mod:`.vocab`), their rows predicted by the hypernet once and
cached on disk (:mod:`.rows`), an approximate nearest-neighbour index over the output rows
(:mod:`.ann`, hnswlib by default: ``pip install 'tokenswap[ann]'``), greedy decoding and
exact/approximate scoring (:mod:`.decode`)::

    from tokenswap.dynamic.ann import build_index
    from tokenswap.dynamic.decode import LargeVocabLM
    from tokenswap.dynamic.rows import extra_rows
    from tokenswap.dynamic.vocab import LargeVocab, count_runs

    counts = count_runs(tokenizer, texts)
    vocab = LargeVocab.from_counts(ByteVocab.from_tokenizer(tokenizer), rows_of_model, counts,
                                   200_000)
    rows = extra_rows(hypernet, SourceEmbeddings.from_bundle(bundle), tokenizer, vocab,
                      cache_dir=Path.home() / ".cache/tokenswap/large-vocab")
    lm = LargeVocabLM(model, tokenizer, vocab, rows, build_index(rows.output, rows.bias))
    lm.generate("Der Befehl ls", 32).data  # bytes
"""

from tokenswap.dynamic.merge import MergedBatch, merge_batch, merge_levels

__all__ = ["MergedBatch", "merge_batch", "merge_levels"]

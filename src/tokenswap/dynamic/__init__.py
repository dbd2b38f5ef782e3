"""Dynamic tokenization: per-batch merges, embeddings for the merged tokens, prefill with them.

Feher, Vulić & Minixhofer, "Retrofitting (Large) Language Models with Dynamic Tokenization"
(arXiv 2411.18553). The model keeps its tokenizer; a batch's frequent subword sequences become
single tokens (:mod:`.merge`), whose input embeddings come from a zero-shot hypernet or an init
method, cached by their bytes (:mod:`.embed`); the merged context is prefilled through
``inputs_embeds`` and what follows is scored or generated with the base tokenizer
(:mod:`.prefill`). Not here: generation over a large fixed vocabulary through a
nearest-neighbour index (the paper's section 5).
"""

from tokenswap.dynamic.merge import MergedBatch, merge_batch, merge_levels

__all__ = ["MergedBatch", "merge_batch", "merge_levels"]

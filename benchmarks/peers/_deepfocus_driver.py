"""Run FOCUS on a causal LM and save the result (runs in benchmarks/.peers-venv, not tokenswap).

    python _deepfocus_driver.py --source DIR --target-tokenizer DIR --corpus FILE.txt --out DIR
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from deepfocus import FOCUS
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--target-tokenizer", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--processes", type=int, default=2)
    args = p.parse_args()
    torch.set_grad_enabled(False)

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.source, dtype=torch.float32)
    source_tok = AutoTokenizer.from_pretrained(args.source)
    target_tok = AutoTokenizer.from_pretrained(args.target_tokenizer)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    if not tied:
        raise SystemExit("driver handles tied models only (FOCUS initialises one matrix)")
    source = model.get_input_embeddings().weight.detach()
    embeddings = FOCUS(source_embeddings=source, source_tokenizer=source_tok,
                       target_tokenizer=target_tok, target_training_data_path=args.corpus,
                       processes=args.processes, seed=0)
    nonfinite = int((~torch.isfinite(embeddings)).any(dim=1).sum())
    model.resize_token_embeddings(len(target_tok))
    model.get_input_embeddings().weight.data = embeddings.to(source.dtype).contiguous()
    model.tie_weights()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(target_tok, key)
        setattr(model.config, key, value)
        if model.generation_config is not None:
            setattr(model.generation_config, key, value)
    model.save_pretrained(args.out)
    target_tok.save_pretrained(args.out)
    replacement = sum(1 for i in range(len(target_tok)) if "\ufffd" in target_tok.decode([i]))
    summary = {"nonfinite_rows": nonfinite, "replacement_char_tokens": replacement,
               "driver_seconds": time.perf_counter() - t0}
    with open(f"{args.out}/peer-summary.json", "w") as fh:
        json.dump(summary, fh)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

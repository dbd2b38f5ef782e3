"""Runs genlm-bytes inside ``benchmarks/.genlm-venv`` for ``benchmarks/midtoken.py`` (no tokenswap).

Reads prompts (JSON Lines: ``prompt``/``target`` as hex, ``max_bytes``, ``stop``, and
``head_ids``: the canonical tokens of the prompt's head, the part tokenswap's
``ByteLM.condition`` reads as tokens), and for each
writes one JSON line: the greedy continuation (hex, stopped at ``stop`` or ``max_bytes``), the
wall and CPU seconds of prefill + generation, and the bits of the true target under the beam's
next-byte distributions after the prompt. The beam starts from the document-start token and the
head's tokens (a ``LazyTrieState`` on that token context: genlm-bytes' own state, given the same
context tokenswap uses) and prefills the rest of the prompt byte by byte. Stops starting
prompts after ``--cpu-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time

import torch


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--cpu-seconds", type=float, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    from genlm.backend.llm import AsyncTransformer
    from genlm.bytes import BeamParams, ByteBeamState, LazyTrieState, StatefulTokenizedLM
    from genlm.bytes.byte_lm.trie_state import TrieMode
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    llm = AsyncTransformer(model, tok)
    params = BeamParams(K=args.beam)
    initial = await ByteBeamState.initial(llm, params)
    print("LOAD: " + json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                                 "genlm_beam": args.beam}), flush=True)
    prompts = [json.loads(x) for x in open(args.prompts)]
    start = time.process_time()
    with open(args.out, "w") as out:
        for k, p in enumerate(prompts):
            if time.process_time() - start > args.cpu_seconds:
                print(f"CPU budget reached after {k} prompts", flush=True)
                break
            prompt, target = bytes.fromhex(p["prompt"]), bytes.fromhex(p["target"])
            head = bytes.fromhex(p["head"])
            stop = p["stop"].encode() if p["stop"] else None
            try:
                w, c = time.perf_counter(), time.process_time()
                root = initial.states[0]
                start_state = LazyTrieState(
                    lm_state=StatefulTokenizedLM(llm, [tok.bos_token_id, *p["head_ids"]]),
                    trie=root.trie, node=root.trie.trie.root, weight=0.0, mode=TrieMode.WITH_EOS)
                beam = ByteBeamState([await start_state.materialize()], params)
                state = await beam.prefill(prompt[len(head):])
                after = state
                gen = bytearray()
                while len(gen) < p["max_bytes"]:
                    b = int((await state.logp_next()).ps.argmax())
                    if b >= 256:  # 256: end of token (never here), 257: end of sequence
                        break
                    gen.append(b)
                    if stop and stop in gen:
                        break
                    state = await (state.prune() << b)
                wall, cpu = time.perf_counter() - w, time.process_time() - c
                bits, state = 0.0, after
                for b in target:
                    bits -= float((await state.logp_next()).ps[b]) / math.log(2)
                    state = await (state.prune() << b)
                    if len(state) == 0:
                        bits = math.inf
                        break
                rec = {"output": bytes(gen).hex(), "wall": wall, "cpu": cpu,
                       "bits": bits if math.isfinite(bits) else None}
            except Exception as err:  # noqa: BLE001 - recorded per prompt
                rec = {"error": f"{type(err).__name__}: {err}"[:200]}
            out.write(json.dumps(rec) + "\n")
            out.flush()
            shown = bytes.fromhex(rec["output"]) if "output" in rec else rec["error"]
            print(f"[{k + 1}/{len(prompts)}] {target!r} -> {shown!r} {rec.get('wall', 0):.1f} s",
                  flush=True)


if __name__ == "__main__":
    asyncio.run(main())

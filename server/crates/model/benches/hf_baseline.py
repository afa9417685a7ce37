#!/usr/bin/env python3
"""Hugging Face transformers baseline for glm-bench: the same model directory, fp32 compute,
greedy, batch 1, KV cache on. Prints prefill tokens/s and decode tokens/s.

  python server/crates/model/benches/hf_baseline.py --model DIR [--prompt-len 128] [--decode-steps 32]

Needs torch and transformers>=5.23 (the fixtures' venv recipe)."""
import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.eval()
    vocab = model.config.vocab_size
    # Same synthetic prompt as glm-bench (sequence 0).
    ids = torch.tensor([[(i * 131 + 7) % min(vocab, 2000) for i in range(a.prompt_len)]])

    def decode(steps, prompt):
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model(prompt, use_cache=True)
            t1 = time.perf_counter()
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(steps):
                out = model(nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    decode(2, ids[:, :16])  # warm-up
    prefill_s, decode_s = decode(a.decode_steps, ids)
    print(f"hf threads        {a.threads} (torch {torch.__version__})")
    print(f"hf prefill        {a.prompt_len / prefill_s:.1f} tokens/s ({a.prompt_len} tokens in {prefill_s:.3f} s)")
    print(f"hf decode batch 1 {a.decode_steps / decode_s:.1f} tokens/s ({1000 * decode_s / a.decode_steps:.2f} ms/token)")


if __name__ == "__main__":
    main()

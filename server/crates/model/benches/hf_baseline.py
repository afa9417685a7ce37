#!/usr/bin/env python3
"""Hugging Face transformers baseline for glm-bench: the same model directory, greedy, KV
cache on. Prints prefill tokens/s and decode tokens/s at each batch size.

  python server/crates/model/benches/hf_baseline.py --model DIR [--prompt-len 128]
      [--decode-steps 32] [--batches 1] [--device cpu|cuda] [--dtype float32|bfloat16]

Needs torch and transformers>=5.23 (the fixtures' venv recipe; the GPU machines have both)."""
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
    ap.add_argument("--batches", default="1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(a.device)
    model.eval()
    vocab = model.config.vocab_size
    cuda = a.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def prompt(batch, length):
        # Same synthetic prompts as glm-bench (sequence b shifts the pattern).
        return torch.tensor(
            [[(i * 131 + 7 + 17 * b) % min(vocab, 2000) for i in range(length)] for b in range(batch)],
            device=a.device,
        )

    def decode(steps, ids):
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            sync()
            t1 = time.perf_counter()
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            for _ in range(steps):
                out = model(nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            sync()
            t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    decode(2, prompt(1, 16))  # warm-up
    print(f"hf device         {a.device} {a.dtype} (torch {torch.__version__}, {a.threads} threads)")
    for b in [int(x) for x in a.batches.split(",")]:
        prefill_s, decode_s = decode(a.decode_steps, prompt(b, a.prompt_len))
        print(f"hf prefill b{b:<3}   {b * a.prompt_len / prefill_s:.1f} tokens/s ({b}x{a.prompt_len} tokens in {prefill_s:.3f} s)")
        print(f"hf decode batch {b:<3} {b * a.decode_steps / decode_s:.1f} tokens/s ({1000 * decode_s / a.decode_steps:.2f} ms/step)")


if __name__ == "__main__":
    main()

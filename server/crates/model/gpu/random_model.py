#!/usr/bin/env python3
"""A random-weight checkpoint of a real GLM shape, for glm-bench and the transformers
baseline on a GPU (no hub there). The config is the released one with fewer layers when the
whole model would not fit the disk or the card.

  python3 random_model.py --arch flash|air --layers N --out DIR [--tokenizer DIR]
"""
import argparse
import json
import os
import shutil

import torch
from transformers import AutoConfig, AutoModelForCausalLM

# config.json fields of the released checkpoints (reference/GLM.md).
SHAPES = {
    "flash": dict(
        architectures=["Glm4MoeLiteForCausalLM"], model_type="glm4_moe_lite", vocab_size=154880,
        hidden_size=2048, intermediate_size=10240, num_hidden_layers=47, num_attention_heads=20,
        num_key_value_heads=20, q_lora_rank=768, kv_lora_rank=512, qk_nope_head_dim=192,
        qk_rope_head_dim=64, v_head_dim=256, rope_theta=1000000.0, rope_interleave=True,
        n_routed_experts=64, n_shared_experts=1, num_experts_per_tok=4, moe_intermediate_size=1536,
        first_k_dense_replace=1, routed_scaling_factor=1.8, n_group=1, topk_group=1,
        norm_topk_prob=True, max_position_embeddings=202752, rms_norm_eps=1e-5,
        tie_word_embeddings=False, eos_token_id=[154820, 154827, 154829]),
    "air": dict(
        architectures=["Glm4MoeForCausalLM"], model_type="glm4_moe", vocab_size=151552,
        hidden_size=4096, intermediate_size=10944, num_hidden_layers=46, num_attention_heads=96,
        num_key_value_heads=8, head_dim=128, partial_rotary_factor=0.5, rope_theta=1000000.0,
        attention_bias=True, use_qk_norm=False, n_routed_experts=128, n_shared_experts=1,
        num_experts_per_tok=8, moe_intermediate_size=1408, first_k_dense_replace=1,
        routed_scaling_factor=1.0, n_group=1, topk_group=1, norm_topk_prob=True,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
        eos_token_id=[151329, 151336, 151338]),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=sorted(SHAPES), required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", help="tokenizer files to copy next to the weights")
    a = ap.parse_args()
    fields = dict(SHAPES[a.arch], num_hidden_layers=a.layers, torch_dtype="bfloat16")
    cfg = AutoConfig.for_model(fields.pop("model_type"), **fields)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    # Small weights keep the random activations finite through every layer.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    model.save_pretrained(a.out, safe_serialization=True, max_shard_size="5GB")
    for f in os.listdir(a.tokenizer) if a.tokenizer else []:
        shutil.copy(os.path.join(a.tokenizer, f), a.out)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"arch": a.arch, "layers": a.layers, "params": n, "dir": a.out}))


if __name__ == "__main__":
    main()

"""Tokens/s of Hugging Face transformers' generate on an exported Switchyard model.

  python bench/oracle/hf_generate.py EXPORT_DIR --batch 1,8 --prompt 32 --tokens 256 --threads 2 [--repeats N]

Greedy decoding (do_sample=False), use_cache=True, float32, a fixed random prompt of --prompt
tokens per sequence (or --prompt-ids), exactly --tokens new tokens (no end-of-sequence token stops
it). Prints one JSON object per batch size: {"batch", "tokens_per_s", "seconds", "ids",
"all_ids"} with the best of --repeats runs (this shared machine's speed swings; the best run is
the machine's, not a neighbour's). `ids` are the first sequence's new tokens, `all_ids` every
sequence's, for checking against ours.
Not a dependency of Switchyard; needs torch and transformers.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import Qwen2MoeForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("export_dir")
parser.add_argument("--batch", default="1,8")
parser.add_argument("--prompt", type=int, default=32)
parser.add_argument("--tokens", type=int, default=256)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=1)
parser.add_argument("--prompt-ids", default=None, help="JSON file with [[ids], ...]: the prompts to use")
args = parser.parse_args()

torch.set_num_threads(args.threads)
model = Qwen2MoeForCausalLM.from_pretrained(args.export_dir, torch_dtype=torch.float32)
model.eval()
vocab = model.config.vocab_size
given = json.load(open(args.prompt_ids)) if args.prompt_ids else None

for batch in [int(b) for b in args.batch.split(",")]:
    if given:
        prompts = torch.tensor([given[i % len(given)] for i in range(batch)], dtype=torch.long)
    else:
        prompts = torch.randint(0, vocab, (batch, args.prompt), generator=torch.Generator().manual_seed(1))
    best = None
    out = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens, do_sample=False, use_cache=True, pad_token_id=0)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    new = out[:, prompts.shape[1]:]
    print(json.dumps({"batch": batch, "tokens_per_s": batch * new.shape[1] / best, "seconds": best,
                      "ids": new[0].tolist(), "all_ids": new.tolist(), "torch": torch.__version__, "transformers": transformers.__version__}))

"""transformers' side of `npm run bench:switch-transformers` (not a dependency of Switchyard).

  python bench/switch_transformers_generate.py make DIR    # a switch-base-8-sized model, transformers' random initialization (seed 0), float32 safetensors
  python bench/switch_transformers_generate.py serve DIR   # loads DIR; for each line "N id id …" on stdin, greedy generate of exactly N new tokens

serve answers each request with one JSON line: {"seconds": …, "ids": […]}, the time of generate()
alone. The benchmark sets OMP_NUM_THREADS=2 and OMP_WAIT_POLICY=PASSIVE.
"""
import json
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

SWITCH_BASE_8 = dict(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, num_experts=8,
    num_sparse_encoder_layers=6, num_sparse_decoder_layers=6, expert_capacity=64, relative_attention_num_buckets=32,
    relative_attention_max_distance=128, decoder_start_token_id=0,
)
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test", "fixtures", "switch-transformers")


def make(out):
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**SWITCH_BASE_8))
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(FIXTURES, name), out)


def serve(path):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = SwitchTransformersForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    print(json.dumps({"ready": True, "transformers": transformers.__version__, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        n, *prompt = [int(v) for v in line.split()]
        ids = torch.tensor([prompt])
        with torch.no_grad():
            began = time.perf_counter()
            out = model.generate(input_ids=ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            seconds = time.perf_counter() - began
        print(json.dumps({"seconds": seconds, "ids": out[0, 1:].tolist()}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(__doc__)

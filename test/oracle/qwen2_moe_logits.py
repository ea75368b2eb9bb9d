"""Checks an exported folder against transformers' own Qwen2MoeForCausalLM.

  python test/oracle/qwen2_moe_logits.py EXPORT_DIR CHECK_JSON

CHECK_JSON holds {"tokens": [[...], ...], "logits": [...] (flat, batch × time × vocab), "text": str,
"ids": [...]}: Switchyard's logits for those tokens, and its encoding of `text`. Prints the
relative error and exits 1 above 1e-4, or if the tokenizer encodes `text` differently.
Not a dependency of Switchyard; needs torch and transformers.
"""
import json
import sys

import torch
import transformers
from transformers import AutoTokenizer, Qwen2MoeForCausalLM

export_dir, check_path = sys.argv[1], sys.argv[2]
check = json.load(open(check_path))
model = Qwen2MoeForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32)
model.eval()
tokens = torch.tensor(check["tokens"], dtype=torch.long)
with torch.no_grad():
    logits = model(tokens).logits.double().flatten()
ours = torch.tensor(check["logits"], dtype=torch.float64)
error = float((logits - ours).norm() / ours.norm())
print(f"transformers {transformers.__version__}, torch {torch.__version__}: logits relative error {error:.3e}")

tokenizer = AutoTokenizer.from_pretrained(export_dir)
ids = tokenizer(check["text"])["input_ids"]
print(f"tokenizer: {check['text']!r} -> {ids[:12]}... ours {check['ids'][:12]}...; decode {tokenizer.decode(ids)!r}")
ok = error < 1e-6 and ids == check["ids"] and tokenizer.decode(ids) == check["text"]
sys.exit(0 if ok else 1)

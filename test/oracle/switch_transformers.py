"""transformers' SwitchTransformersForConditionalGeneration as the oracle for Switchyard's.

  python test/oracle/switch_transformers.py tokenizer   # trains the Unigram tokenizer (once; committed)
  python test/oracle/switch_transformers.py fixtures    # writes the committed expected outputs (compact gradients)
  python test/oracle/switch_transformers.py live OUT    # Hugging Face folders saved by transformers, and full expected outputs

Everything is made offline. The tokenizer is a SentencePiece Unigram trained on tiny-shakespeare
with T5's settings (pad 0, eos 1, unk 2, no bos, nmt_nfkc), plus 100 sentinels in T5's order
(<extra_id_0> is the last id). The model is small (d_model 32, 4 heads of 6, d_ff 64, 4+4 blocks
with 2+2 sparse, 4 experts, 8 buckets, max distance 16) with weights from a hash of each
parameter's name and index, bfloat16-exact, so that the TypeScript tests make the same weights
without Python (test/switch-transformers-fixture.ts has the same function). Outputs: logits,
router logits and keep masks with capacity 3 (binding) and 64 (not), the losses (cross-entropy,
z-loss and load-balancing loss, coefficients 0.001), greedy generate with and without the cache,
the mean cross-entropy of a pairs file, one training step's gradients, tokenizer ids and decodes
of 400 strings, and relative position buckets. Needs torch, transformers 5.18, sentencepiece.
"""
import json
import os
import random
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

os.environ["HF_HUB_OFFLINE"] = "1"

if transformers.__version__ != "5.18.0":
    # 5.0–5.17 never enforced expert_capacity and put the z-loss on probabilities (fixed in #48421).
    sys.exit(f"the oracle is transformers 5.18.0; this is {transformers.__version__}")

from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration, T5Tokenizer  # noqa: E402
from transformers.models.switch_transformers.modeling_switch_transformers import (  # noqa: E402
    SwitchTransformersAttention,
    SwitchTransformersTop1Router,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "test", "fixtures", "switch-transformers")
torch.set_num_threads(1)

CONFIG = dict(
    vocab_size=304, d_model=32, d_kv=6, d_ff=64, num_layers=4, num_decoder_layers=4, num_heads=4, num_experts=4,
    num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, expert_capacity=3, relative_attention_num_buckets=8,
    relative_attention_max_distance=16, dropout_rate=0.0, router_jitter_noise=0.0, decoder_start_token_id=0,
    router_z_loss_coef=0.001, router_aux_loss_coef=0.001,
)
PAIRS = [
    ("The <extra_id_0> walks in <extra_id_1> park .", "<extra_id_0> cute dog <extra_id_1> the <extra_id_2>"),
    ("ROMEO: But soft, what light through yonder window breaks? It is the east.", "<extra_id_0> Juliet is the sun"),
    ("To be, or not to be: that is the question.", "Hamlet speaks"),
]
PROMPT = "The <extra_id_0> walks in <extra_id_1> park ."


def fnv1a(s):
    h = 0x811C9DC5
    for byte in s.encode("utf8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def hashed(name, n):
    """A uint32 hash per index of a named tensor (the same as the TypeScript one)."""
    x = (np.arange(n, dtype=np.uint64) * 0x9E3779B1 + fnv1a(name)) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def weight_values(name, shape):
    """bfloat16-exact values: k/128 · scale with k in [-128, 128), scale a power of two; norms 1 + m/32."""
    n = int(np.prod(shape))
    k = (hashed(name, n) >> 24).astype(np.int64) - 128
    if "layer_norm" in name:
        v = 1 + np.floor(k / 16) / 32
    else:
        scale = 1.0  # the routers: peaked, so that capacity binds
        if name == "shared.weight":
            scale = 2.0
        elif name.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi.weight", "relative_attention_bias.weight")):
            scale = 0.5
        elif name.endswith("wo.weight"):
            scale = 0.25
        v = k / 128 * scale
    return torch.tensor(v.astype(np.float32).reshape(shape))


def signs(name, n):
    """±1 per index, for gradient projections."""
    return torch.tensor(np.where(hashed("sign:" + name, n) >> 31, -1.0, 1.0), dtype=torch.float64)


def build(capacity):
    torch.manual_seed(0)
    model = SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**{**CONFIG, "expert_capacity": capacity}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weight_values(name, tuple(p.shape)))
    assert model.config._attn_implementation == "eager"
    return model.eval()


def tokenizer():
    return T5Tokenizer.from_pretrained(FIXTURES)


def batch(tok, pairs):
    enc = tok([a for a, _ in pairs], padding=True, return_tensors="pt")
    labels = tok([b for _, b in pairs], padding=True, return_tensors="pt").input_ids
    labels[labels == tok.pad_token_id] = -100
    return enc.input_ids, enc.attention_mask, labels


class Routers:
    """Records every router's output in call order: logits, the top choice, whether it was kept."""

    def __init__(self, model):
        self.calls = []
        for m in model.modules():
            if isinstance(m, SwitchTransformersTop1Router):
                m.register_forward_hook(lambda _m, _i, out: self.calls.append(out))

    def take(self):
        calls, self.calls = self.calls, []
        return [(logits.detach(), logits.argmax(-1), index.sum(-1)) for index, _probs, logits in calls]


def outputs(tok, full):
    ids, mask, labels = batch(tok, PAIRS[:2])
    tensors, values = {}, {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()}
    for capacity in (3, 64):
        model = build(capacity)
        routers = Routers(model)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
        tensors[f"cap{capacity}.logits"] = out.logits
        for i, (logits, choice, kept) in enumerate(routers.take()):
            tensors[f"cap{capacity}.router{i}.probs"] = torch.softmax(logits.double(), -1).float()
            tensors[f"cap{capacity}.router{i}.choice"] = choice.int()
            tensors[f"cap{capacity}.router{i}.kept"] = kept.int()
        ce = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1).double(), labels.flatten(), ignore_index=-100)
        values[f"cap{capacity}"] = {
            "loss": out.loss.item(), "cross_entropy": ce.item(),
            "encoder_z_loss": out.encoder_z_loss.item(), "encoder_aux_loss": out.encoder_aux_loss.item(),
            "decoder_z_loss": out.decoder_z_loss.item(), "decoder_aux_loss": out.decoder_aux_loss.item(),
        }
        with torch.no_grad():
            values[f"cap{capacity}"]["generate"] = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False).tolist()
            values[f"cap{capacity}"]["generate_no_cache"] = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, use_cache=False).tolist()
            one = tok(PROMPT, return_tensors="pt")
            ids_ = model.generate(**one, max_new_tokens=10, do_sample=False)[0].tolist()
            values[f"cap{capacity}"]["generate_prompt"] = ids_
            values[f"cap{capacity}"]["generate_prompt_text"] = tok.decode(ids_[1:])
        routers.take()

    # The mean cross-entropy over every target token of a pairs file, one pair at a time.
    model = build(3)
    total, count = 0.0, 0
    for pair in PAIRS:
        i, m, l = batch(tok, [pair])
        with torch.no_grad():
            logits = model(input_ids=i, attention_mask=m, labels=l).logits
        total += torch.nn.functional.cross_entropy(logits[0].double(), l[0], reduction="sum").item()
        count += int((l != -100).sum())
    values["pairs_loss"] = total / count

    # One training step's gradients (capacity binding; no dropout or jitter, so training is deterministic).
    model = build(3).train()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_router_logits=True)
    out.loss.backward()
    values["train_loss"] = out.loss.item()
    summary = {}
    for name, p in model.named_parameters():
        grad = p.grad if p.grad is not None else torch.zeros_like(p)  # an expert that received no token
        g = grad.double().flatten()
        summary[name] = {"norm": g.norm().item(), "projection": (g * signs(name, g.numel())).sum().item()}
        if full or g.numel() <= 256:
            tensors[f"grad.{name}"] = grad.float().contiguous()
    values["gradients"] = summary
    return tensors, values


def tokenizer_cases(tok):
    base = [
        "", " ", "  ", "\t", "\n", "Hello world", "Hello  world", " Hello world ", "Hello\tworld\nagain", PROMPT,
        "<extra_id_0>", "<extra_id_99> end", "a<extra_id_5>b", "x </s> y", "<pad><unk></s>", "<extra_id_100>", "<extra_id_0><extra_id_1>",
        "café", "cafe\u0301", "naïve résumé", "Zürich", "ﬁne ﬂow", "①②③", "㎏ ㎞", "Ｆｕｌｌｗｉｄｔｈ", "ｶﾀｶﾅ", "한국어", "東京", "日本語のテキスト",
        "emoji 😀👍🏽", "zero\u200bwidth", "soft\u00adhyphen", "nbsp\u00a0here", "ideo\u3000space", "tilde\uff5ewave", "™ ® ©", "𝐀𝐁𝐂",
        "\x01\x02ctrl\x7f", "line1\r\nline2", "\u2028sep\u2029", "ǅ ǆ", "İstanbul", "ß ẞ", "ﬀ", "½ ¼", "x² y³", "…", "—–-",
        "“quotes” ‘single’", "¿Qué?", "Ελληνικά", "русский текст", "عربى", "עברית", "हिन्दी", "ไทย", "\ufeffbom", "\ufffd",
        "a\u0300\u0301\u0302", "Å Å", "ＡＢＣ１２３", "‼", "℃ ℉", "ⅷ Ⅻ", "ﾟ", "\u00b4", "¨",
        "ROMEO:\nWhat light through yonder window breaks?", "To be, or not to be, that is the question:", "12345 3.14159 1e-9",
        "a@b.com https://example.org/x?y=1",
    ]
    rng = random.Random(18)
    pieces = [w for s in base for w in s.split(" ") if w] + [f"<extra_id_{i}>" for i in (0, 1, 2, 17, 42, 99)]
    pieces += [" ", "  ", "\t", "\n", "the", "King", "love", "thee"]
    words = open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf8").read().split()[:20000]
    strings = list(base)
    while len(strings) < 400:
        if rng.random() < 0.5:
            i = rng.randrange(len(words) - 20)
            strings.append(" ".join(words[i:i + rng.randrange(1, 20)]))
        else:
            strings.append("".join(rng.choice(pieces) + rng.choice(["", " ", " ", "  "]) for _ in range(rng.randrange(1, 8))))
    cases = []
    for s in strings:
        ids = tok(s).input_ids
        cases.append({"text": s, "ids": ids, "decoded": tok.decode(ids), "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    return cases


def buckets():
    rp = torch.arange(-300, 301)
    return {f"{n},{d},{int(b)}": SwitchTransformersAttention._relative_position_bucket(rp, bidirectional=b, num_buckets=n, max_distance=d).tolist()
            for n, d in ((8, 16), (32, 128)) for b in (True, False)}


def write(out_dir, full):
    tok = tokenizer()
    tensors, values = outputs(tok, full)
    values.update({
        "transformers": transformers.__version__, "torch": torch.__version__, "pairs": PAIRS, "prompt": PROMPT,
        "hf_config": json.loads(build(3).config.to_json_string()),
        "tokenizer": tokenizer_cases(tok), "buckets": buckets(),
    })
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "expected.safetensors"))
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf8") as f:
        json.dump(values, f, ensure_ascii=False)


def train_tokenizer():
    import sentencepiece as spm

    work = os.path.join(FIXTURES, ".spm")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, "corpus.txt")
    with open(os.path.join(ROOT, "data", "tinyshakespeare.txt"), encoding="utf8") as src, open(corpus, "w", encoding="utf8") as dst:
        dst.write(src.read()[:300000])
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=os.path.join(work, "spiece"), model_type="unigram", vocab_size=200, pad_id=0, eos_id=1,
        unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", normalization_rule_name="nmt_nfkc",
        character_coverage=1.0, num_threads=1, minloglevel=2)
    proto = open(os.path.join(work, "spiece.model"), "rb").read()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(work, "spiece.model"))
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]  # T5's order: <extra_id_0> is the last id
    tok = T5Tokenizer(vocab=vocab, _spm_precompiled_charsmap=precompiled_charsmap(proto), extra_ids=100)
    tok.save_pretrained(FIXTURES)
    for name in os.listdir(work):
        os.remove(os.path.join(work, name))
    os.rmdir(work)


def precompiled_charsmap(proto):
    """ModelProto.normalizer_spec (field 3).precompiled_charsmap (field 2), read without the protobuf package."""
    def fields(buf):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            kind = key & 7
            if kind == 0:
                _, i = varint(buf, i)
            elif kind == 2:
                n, i = varint(buf, i)
                yield key >> 3, buf[i:i + n]
                i += n
            else:
                i += {1: 8, 5: 4}[kind]

    def varint(buf, i):
        value = shift = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    spec = next(v for n, v in fields(proto) if n == 3)
    return next(v for n, v in fields(spec) if n == 2)


def save_models(out_dir):
    """What transformers itself writes: float32 in one file, and bfloat16 in shards with their index."""
    tok = tokenizer()
    for name, dtype, shard in (("f32", torch.float32, None), ("bf16-sharded", torch.bfloat16, "60KB")):
        model = build(3).to(dtype)
        path = os.path.join(out_dir, name)
        model.save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
        tok.save_pretrained(path)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "tokenizer":
        train_tokenizer()
    elif mode == "fixtures":
        write(FIXTURES, full=False)
    elif mode == "live" and len(sys.argv) == 3:
        write(sys.argv[2], full=True)
        save_models(sys.argv[2])
    else:
        sys.exit(__doc__)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: done")

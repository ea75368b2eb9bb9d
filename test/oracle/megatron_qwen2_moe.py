"""Checks the conversion of a `switchyard export` folder to Megatron-Core's GPTModel, on CPU.

  PYTHONPATH=MEGATRON python test/oracle/megatron_qwen2_moe.py EXPORT_DIR

MEGATRON is a checkout of the Megatron-LM repository at tag core_v0.16.1 (its megatron/core is
pure Python; later tags need Python >= 3.12 and import Triton, which CPU-only torch lacks). Not
part of the test suite: megatron-core is not on this project's package mirror. It builds the
GPTModel that docs/scaling-out.md's flags describe (local layer specs, no Transformer Engine),
maps the export's tensors onto its state dict (every key and shape must match), and compares its
logits with transformers' Qwen2MoeForCausalLM on the same folder, then its per-layer router losses
(training mode, dropless) with Switchyard's. Exits 1 on a mismatch.

Three shims let Megatron-Core's forward run without CUDA; none changes what it computes:
torch.cuda.current_device() answers "cpu" (the rotary table and the router weight are moved
there), the CUDA RNG tracker's fork (which only scopes dropout's random numbers) is a no-op, and
moe_utils.te_general_gemm, which 0.16.1 leaves undefined without Transformer Engine, is None (its
own fallback to torch's matmul).
"""
import contextlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

torch.cuda.current_device = lambda: "cpu"

import megatron.core  # noqa: E402
import megatron.core.transformer.moe.moe_utils as moe_utils  # noqa: E402
from megatron.core import parallel_state, tensor_parallel  # noqa: E402
from megatron.core.models.gpt import GPTModel  # noqa: E402
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec  # noqa: E402
from megatron.core.transformer import TransformerConfig  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import Qwen2MoeForCausalLM  # noqa: E402

if not hasattr(moe_utils, "te_general_gemm"):
    moe_utils.te_general_gemm = None

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from continue_fsdp import router_losses  # noqa: E402  Switchyard's router losses, as the continued training uses them


def megatron_config(hf, section):
    """The TransformerConfig of docs/scaling-out.md's flags for this export (dropless: no --moe-expert-capacity-factor)."""
    return TransformerConfig(
        num_layers=hf["num_hidden_layers"], hidden_size=hf["hidden_size"], num_attention_heads=hf["num_attention_heads"],
        num_query_groups=hf["num_key_value_heads"], ffn_hidden_size=hf["intermediate_size"],
        num_moe_experts=hf["num_experts"], moe_ffn_hidden_size=hf["moe_intermediate_size"], moe_router_topk=hf["num_experts_per_tok"],
        moe_layer_freq=[0 if i in hf["mlp_only_layers"] else 1 for i in range(hf["num_hidden_layers"])],
        moe_router_pre_softmax=True, moe_router_dtype="fp32", moe_router_load_balancing_type="aux_loss",
        moe_aux_loss_coeff=section["model"]["auxLossCoef"], moe_z_loss_coeff=section["model"]["zLossCoef"],
        moe_token_dispatcher_type="allgather", moe_grouped_gemm=False,
        normalization="RMSNorm", layernorm_epsilon=hf["rms_norm_eps"], gated_linear_unit=True, activation_func=F.silu,
        add_bias_linear=False, add_qkv_bias=False, hidden_dropout=0.0, attention_dropout=0.0,
        use_cpu_initialization=True, params_dtype=torch.float32, bf16=False, fp16=False,
        persist_layer_norm=False, bias_activation_fusion=False, apply_rope_fusion=False, gradient_accumulation_fusion=False,
        masked_softmax_fusion=False, bias_dropout_fusion=False,
    )


def convert(hf, w):
    """The export's tensors under Megatron-Core's names. Its fused QKV holds, per query group, the group's queries, key
    and value; its GLU's fc1 is [gate; up] (act(first half) * second half); the embedding stays tied to the output."""
    heads, d = hf["num_attention_heads"], hf["hidden_size"]
    hd = d // heads
    glu = lambda p: torch.cat([w[f"{p}.gate_proj.weight"], w[f"{p}.up_proj.weight"]], 0)  # noqa: E731
    out = {"embedding.word_embeddings.weight": w["model.embed_tokens.weight"], "decoder.final_layernorm.weight": w["model.norm.weight"]}
    for i in range(hf["num_hidden_layers"]):
        a, b = f"decoder.layers.{i}", f"model.layers.{i}"
        q, k, v = (w[f"{b}.self_attn.{n}_proj.weight"].view(heads, hd, d) for n in "qkv")
        out[f"{a}.input_layernorm.weight"] = w[f"{b}.input_layernorm.weight"]
        out[f"{a}.self_attention.linear_qkv.weight"] = torch.cat([q, k, v], dim=1).reshape(3 * d, d)
        out[f"{a}.self_attention.linear_proj.weight"] = w[f"{b}.self_attn.o_proj.weight"]
        out[f"{a}.pre_mlp_layernorm.weight"] = w[f"{b}.post_attention_layernorm.weight"]
        if i in hf["mlp_only_layers"]:
            out[f"{a}.mlp.linear_fc1.weight"] = glu(f"{b}.mlp")
            out[f"{a}.mlp.linear_fc2.weight"] = w[f"{b}.mlp.down_proj.weight"]
        else:
            out[f"{a}.mlp.router.weight"] = w[f"{b}.mlp.gate.weight"]
            for e in range(hf["num_experts"]):
                out[f"{a}.mlp.experts.local_experts.{e}.linear_fc1.weight"] = glu(f"{b}.mlp.experts.{e}")
                out[f"{a}.mlp.experts.local_experts.{e}.linear_fc2.weight"] = w[f"{b}.mlp.experts.{e}.down_proj.weight"]
    return out


def main(export):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29731")
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    hf = json.loads((export / "config.json").read_text())
    config = megatron_config(hf, hf["switchyard"])
    model = GPTModel(config, transformer_layer_spec=get_gpt_decoder_block_spec(config, use_transformer_engine=False, normalization="RMSNorm"),
                     vocab_size=hf["vocab_size"], max_sequence_length=hf["max_position_embeddings"], position_embedding_type="rope",
                     rotary_base=10000, share_embeddings_and_output_weights=True)
    tensor_parallel.get_cuda_rng_tracker().fork = lambda *a, **k: contextlib.nullcontext()

    theirs = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    ours = convert(hf, load_file(export / "model.safetensors"))
    problems = [f"{k}: Megatron has no such key" for k in ours.keys() - theirs.keys()]
    problems += [f"{k}: the conversion leaves it unset" for k in theirs.keys() - ours.keys()]
    problems += [f"{k}: shape {tuple(ours[k].shape)}, Megatron's {tuple(theirs[k].shape)}"
                 for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape]
    print(f"megatron-core {megatron.core.__version__}: {len(theirs)} tensors, {len(problems)} mismatches in names or shapes")
    for p in problems:
        print("  " + p)
    model.load_state_dict(ours, strict=False)

    context = hf["max_position_embeddings"]
    ids = torch.randint(0, hf["vocab_size"], (3, context), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(context).expand_as(ids)
    causal = torch.triu(torch.ones(context, context), diagonal=1).bool()[None, None]  # True: masked
    reference = Qwen2MoeForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    model.eval()
    with torch.no_grad():
        logits = model(ids, positions, attention_mask=causal).double()
        expected = reference(ids, output_router_logits=True)
    error = float((logits - expected.logits.double()).norm() / expected.logits.double().norm())
    print(f"logits against transformers' Qwen2MoeForCausalLM: relative error {error:.2e}")

    # Training mode (no dropout, dropless): Megatron logs each layer's aux and z losses divided by their coefficients.
    model.train()
    moe_utils.clear_aux_losses_tracker()
    model(ids, positions, attention_mask=causal)
    tracker = moe_utils.get_moe_layer_wise_logging_tracker()
    sparse = [i for i in range(hf["num_hidden_layers"]) if i not in hf["mlp_only_layers"]]
    worst = 0.0
    for layer, router_logits in zip(sparse, expected.router_logits):
        aux, z = router_losses((router_logits,), config.moe_aux_loss_coeff, config.moe_z_loss_coeff, False)
        megatron_aux = float(tracker["load_balancing_loss"]["values"][layer]) * config.moe_aux_loss_coeff
        megatron_z = float(tracker["z_loss"]["values"][layer]) * config.moe_z_loss_coeff
        worst = max(worst, abs(megatron_aux - float(aux)) / float(aux), abs(megatron_z - float(z)) / float(z))
        print(f"layer {layer}: aux loss Megatron {megatron_aux:.8f}, Switchyard {float(aux):.8f}; z-loss Megatron {megatron_z:.8f}, Switchyard {float(z):.8f}")
    print(f"router losses: largest relative difference {worst:.2e}")
    sys.exit(0 if not problems and error < 1e-5 and worst < 1e-5 else 1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))

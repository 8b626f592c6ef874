"""The model and GPU catalogs and the Hugging Face config reader.

Expected figures come from the published sources named beside them (model cards, papers,
datasheets), not from the catalog files under test.
"""

import json
import os
from pathlib import Path

import pytest
import yaml

from fleetsim.catalog import (
    architecture_from_hf_config,
    clear_cache,
    gpu_entry,
    gpu_names,
    load_gpu,
    load_model,
    model_entry,
    model_names,
)
from fleetsim.errors import CatalogError, FleetsimError
from fleetsim.spec.hardware import GpuSpec
from fleetsim.spec.yaml_file import MAX_FILE_BYTES

DATA = Path(__file__).parent / "data"

REQUIRED_MODELS = {
    "gpt2-xl",
    "opt-30b",
    "llama-3-8b",
    "llama-3.1-8b",
    "llama-3-70b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "llama-2-70b",
    "mistral-7b-v0.1",
    "mixtral-8x7b",
    "qwen3-32b",
    "deepseek-v3",
    "gemma-3-27b",
    "mamba-2.8b",
    "jamba-1.5-mini",
    "gpt-oss-120b",
    "gpt-oss-20b",
    "llama-4-scout",
    "qwen3-next-80b-a3b",
    "qwen3.5-35b-a3b",
    "qwen3.5-27b",
    "deepseek-v3.2",
    "deepseek-v2-lite",
    "nemotron-3-nano-30b-a3b",
    "phi-3-mini-4k",
    "granite-3.3-8b",
    "gemma-3n-e4b",
    "gemma-4-26b-a4b",
}
REQUIRED_GPUS = {"h100-sxm", "h100-pcie", "h200", "b200", "gb200", "a100-80gb", "a100-40gb", "l40s", "mi300x"}
# Issue 11: the hardware people buy.
REQUIRED_GPUS |= {"h100-nvl", "h200-nvl", "gh200", "gh200-144gb", "gb300", "b300", "mi325x", "mi355x"}

# Published parameter counts: (total, active or None, where it is published).
PUBLISHED = {
    "gpt2-xl": (1_542_000_000, None, "GPT-2 paper (Radford et al. 2019), Table 2: 1542M"),
    "opt-30b": (30e9, None, "OPT paper (Zhang et al. 2022), Table 1: OPT-30B"),
    "llama-3-8b": (8.03e9, None, "huggingface.co/meta-llama/Meta-Llama-3-8B: 8.03B params"),
    "llama-3.1-8b": (8.03e9, None, "huggingface.co/meta-llama/Llama-3.1-8B: 8.03B params"),
    "llama-3-70b": (70.6e9, None, "huggingface.co/meta-llama/Meta-Llama-3-70B: 70.6B params"),
    "llama-3.1-70b": (70.6e9, None, "huggingface.co/meta-llama/Llama-3.1-70B: 70.6B params"),
    "llama-3.1-405b": (405e9, None, "Llama 3 paper (Dubey et al. 2024): 405B"),
    "llama-2-70b": (70e9, None, "Llama 2 paper (Touvron et al. 2023): 70B"),
    "mistral-7b-v0.1": (7.3e9, None, "mistral.ai/news/announcing-mistral-7b: 7.3B"),
    "mixtral-8x7b": (46.7e9, 12.9e9, "mistral.ai/news/mixtral-of-experts: 46.7B total, 12.9B per token"),
    "qwen3-32b": (32.8e9, None, "Qwen3-32B model card: 32.8B parameters"),
    "deepseek-v3": (671e9, 37e9, "DeepSeek-V3 Technical Report (arXiv 2412.19437): 671B total, 37B activated"),
    # The estimator reads the text decoder; the report's Table 1 gives embedding 1,416M +
    # non-embedding 25,600M for it (the 417M vision encoder is separate).
    "gemma-3-27b": (1_416e6 + 25_600e6, None, "Gemma 3 Technical Report (arXiv 2503.19786), Table 1"),
    "mamba-2.8b": (2.8e9, None, "Mamba paper (Gu & Dao 2023): Mamba-2.8B"),
    "jamba-1.5-mini": (52e9, 12e9, "Jamba-1.5 paper (arXiv 2408.12570): 52B total, 12B active"),
    "gpt-oss-120b": (116.83e9, 5.13e9, "OpenAI gpt-oss model card (Aug 2025), Table 1: 116.83B total, 5.13B active"),
    "gpt-oss-20b": (20.91e9, 3.61e9, "OpenAI gpt-oss model card (Aug 2025), Table 1: 20.91B total, 3.61B active"),
    "deepseek-v2-lite": (15.7e9, 2.4e9, "DeepSeek-V2 paper (arXiv 2405.04434): V2-Lite 15.7B total, 2.4B activated"),
    "nemotron-3-nano-30b-a3b": (31.6e9, 3.2e9, "NVIDIA Nemotron 3 Nano model card: 31.6B total, 3.2B active"),
    "phi-3-mini-4k": (3.8e9, None, "Phi-3 technical report (arXiv 2404.14219): phi-3-mini, 3.8B"),
    "granite-3.3-8b": (8.17e9, None, "huggingface.co/ibm-granite/granite-3.3-8b-instruct: 8.17B params"),
    "qwen3.5-27b": (27e9, None, "Qwen3.5-27B: 27B (model name; text decoder without the vision tower)"),
    "qwen3.5-35b-a3b": (35e9, 3e9, "Qwen3.5-35B-A3B: 35B total, 3B active (model name)"),
    "gemma-4-26b-a4b": (25.2e9, 3.8e9, "Gemma 4 model card: 26B-A4B has 25.2B total, 3.8B active parameters"),
}
# Not listed: llama-4-scout (Meta's 17B active counts the 1.03B input-embedding table this
# catalog leaves out of active: see tests/test_hf_moe.py), qwen3-next-80b-a3b (its "3B activated"
# is rounded from 3.56B: tests/test_hf_hybrid.py), deepseek-v3.2 and gemma-3n-e4b (no published
# count of these exact weights).


def groups(arch, kind):
    return [g for g in arch.layers if g.kind == kind]


# ------------------------------------------------------------------------------- models


def test_catalog_lists_every_required_model():
    assert REQUIRED_MODELS <= set(model_names())
    assert model_names() == sorted(model_names())


@pytest.mark.parametrize("name", sorted(REQUIRED_MODELS))
def test_every_catalog_model_loads_with_its_provenance(name):
    arch = load_model(name)
    entry = model_entry(name)
    assert arch.name == name == entry["name"]
    assert entry["display_name"] and entry["params_source"]
    assert arch.source.startswith("huggingface.co/")
    # a published count, when the entry gives one; else the estimate, said so
    if "total_params" in entry:
        assert arch.total_params == entry["total_params"]
    else:
        assert entry["params_source"].startswith("estimated from this config")
    if "active_params" in entry:
        # Active counts follow one rule (lookups excluded); publishers differ by at most the token
        # table (Meta and Mistral count it, DeepSeek does not) and their rounding.
        table = arch.vocab_size * arch.hidden_size
        assert abs(arch.active_params - entry["active_params"]) <= table + 0.02 * entry["active_params"]
    assert arch.num_layers > 0


def test_gemma_3_27b_is_five_local_to_one_global():
    # Gemma 3 report: 62 layers, 5 local (window 1024) : 1 global, 16 KV heads of 128.
    arch = load_model("gemma-3-27b")
    local = groups(arch, "attention")
    assert sum(g.count for g in local if g.window_tokens == 1024) == 52
    assert sum(g.count for g in local if g.window_tokens is None) == 10
    assert {(g.q_heads, g.kv_heads, g.head_dim) for g in local} == {(32, 16, 128)}
    # Depth order: layers 0-4 local, layer 5 global, ..., the last two layers local.
    assert (arch.layers[0].count, arch.layers[0].window_tokens) == (5, 1024)
    assert (arch.layers[1].count, arch.layers[1].window_tokens) == (1, None)
    assert (arch.layers[-1].count, arch.layers[-1].window_tokens) == (2, 1024)
    assert arch.vocab_size == 262_208  # Gemma3TextConfig default; the hub file omits it


def test_jamba_1_5_mini_has_4_attention_and_28_mamba_layers():
    # Jamba paper: one attention layer per 8-layer block (a:m = 1:7), MoE every other layer.
    arch = load_model("jamba-1.5-mini")
    assert arch.count_layers("attention") == 4
    assert arch.count_layers("ssm") == 28
    assert [(g.kind, g.count) for g in arch.layers[:3]] == [("ssm", 4), ("attention", 1), ("ssm", 7)]
    ssm = groups(arch, "ssm")[0]
    assert (ssm.version, ssm.d_inner, ssm.d_state, ssm.d_conv) == (1, 8192, 16, 4)
    assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_layers) == (16, 2, 16)


def test_deepseek_v3_is_61_mla_layers_with_routed_and_shared_experts():
    # DeepSeek-V3 report: 61 layers, MLA with d_c = 512 and d_h^R = 64; 256 routed experts
    # (8 active) + 1 shared, expert width 2048; the first 3 layers are dense.
    arch = load_model("deepseek-v3")
    assert arch.count_layers("mla") == 61 == arch.num_layers
    (mla,) = arch.layers
    assert (mla.kv_lora_rank, mla.qk_rope_head_dim, mla.q_heads) == (512, 64, 128)
    assert (mla.qk_nope_head_dim, mla.v_head_dim) == (128, 128)
    assert arch.moe.num_experts == 256 and arch.moe.experts_per_token == 8
    assert arch.moe.shared_experts == 1 and arch.moe.moe_layers == 61 - 3
    assert arch.moe.params_per_expert == 3 * 7168 * 2048
    assert arch.native_dtype == "fp8"


def test_qwen3_32b_head_dim_is_not_hidden_over_heads():
    # Qwen3-32B model card: 64 Q heads, 8 KV heads; head_dim 128 while 5120 / 64 = 80.
    (attn,) = load_model("qwen3-32b").layers
    assert (attn.q_heads, attn.kv_heads, attn.head_dim) == (64, 8, 128)
    assert attn.window_tokens is None  # use_sliding_window: false


def test_mistral_7b_v0_1_windows_every_layer_at_4096():
    # Mistral 7B paper: sliding window W = 4096 on all 32 layers.
    (attn,) = load_model("mistral-7b-v0.1").layers
    assert (attn.count, attn.window_tokens) == (32, 4096)
    assert load_model("mistral-7b-v0.1").attention_kind == "SWA"


def test_mixtral_is_eight_experts_two_per_token():
    arch = load_model("mixtral-8x7b")
    assert (arch.moe.num_experts, arch.moe.experts_per_token, arch.moe.moe_layers) == (8, 2, 32)
    assert arch.moe.params_per_expert == 3 * 4096 * 14336
    assert arch.layers[0].window_tokens is None  # sliding_window: null


def test_gpt2_xl_and_opt_30b_are_mha():
    # GPT-2 paper Table 2: 48 layers, d_model 1600 (25 heads of 64); OPT paper: 48 x 56 heads of 128.
    (gpt,) = load_model("gpt2-xl").layers
    assert (gpt.count, gpt.q_heads, gpt.kv_heads, gpt.head_dim) == (48, 25, 25, 64)
    (opt,) = load_model("opt-30b").layers
    assert (opt.count, opt.q_heads, opt.kv_heads, opt.head_dim) == (48, 56, 56, 128)


def test_mamba_2_8b_is_64_mamba1_layers():
    # Mamba paper: 2.8B model = 64 layers, d_model 2560, expand 2, N = 16.
    (ssm,) = load_model("mamba-2.8b").layers
    assert (ssm.kind, ssm.count, ssm.version) == ("ssm", 64, 1)
    assert (ssm.d_inner, ssm.d_state, ssm.d_conv) == (5120, 16, 4)


@pytest.mark.parametrize("name", sorted(REQUIRED_MODELS))
def test_config_json_by_path_matches_the_catalog(name):
    path = DATA / f"{name}.config.json"
    from_file = load_model(path)
    catalog = load_model(name)
    assert from_file.layers == catalog.layers
    assert from_file.moe == catalog.moe
    assert from_file.hidden_size == catalog.hidden_size
    assert from_file.name == name
    assert json.loads(path.read_text()) == model_entry(name)["hf_config"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_estimate_is_within_3_percent_of_the_published_count(name):
    total, active, where = PUBLISHED[name]
    estimate = architecture_from_hf_config(model_entry(name)["hf_config"], name=name)
    assert estimate.total_params == pytest.approx(total, rel=0.03), where
    if active is not None:
        assert estimate.active_params == pytest.approx(active, rel=0.03), where
    else:  # dense: every weight is multiplied except the tables that are only looked up
        assert estimate.total_params - estimate.active_params == lookup_params(model_entry(name)["hf_config"])


def lookup_params(config: dict) -> int:
    """Embedding tables a token only indexes (not active): the untied input table, learned positions."""
    c = config.get("text_config", config)
    if c.get("model_type") == "gpt2":
        return c["n_positions"] * c["n_embd"]  # the token table is tied to the LM head
    if c.get("model_type") == "opt":
        return (c["max_position_embeddings"] + 2) * c["hidden_size"]  # 2 padding-offset rows
    # transformers' defaults where a file omits tie_word_embeddings: Mamba and Gemma tie
    tied = c.get("tie_word_embeddings", c["model_type"] in ("mamba", "gemma3_text"))
    return 0 if tied else c["vocab_size"] * c["hidden_size"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalog_counts_agree_with_the_published_counts(name):
    total, active, where = PUBLISHED[name]
    arch = load_model(name)
    assert arch.total_params == pytest.approx(total, rel=0.03), where
    if active is not None:
        assert arch.active_params == pytest.approx(active, rel=0.03), where
    else:  # dense: the published total (older entries), or the total less the looked-up tables
        assert arch.total_params - arch.active_params in (0, lookup_params(model_entry(name)["hf_config"]))


def test_dense_estimates_are_exact_for_llama_3_8b():
    # 8,030,261,248 is the safetensors total the Hugging Face page reports for Meta-Llama-3-8B.
    arch = architecture_from_hf_config(json.loads((DATA / "llama-3-8b.config.json").read_text()), name="x")
    assert arch.total_params == 8_030_261_248


def test_only_a_published_total_gives_active_from_the_expert_split():
    config = model_entry("mixtral-8x7b")["hf_config"]
    arch = architecture_from_hf_config(config, name="mixtral", total_params=46_700_000_000)
    idle_experts = 6 * 32 * 3 * 4096 * 14336  # 6 of 8 experts idle in 32 layers
    token_table = 32000 * 4096  # looked up, not multiplied (the LM head is a separate table)
    assert arch.active_params == 46_700_000_000 - idle_experts - token_table


def test_load_model_takes_a_folder_and_a_catalog_yaml(tmp_path):
    snapshot = tmp_path / "Meta-Llama-3-8B"
    snapshot.mkdir()
    (snapshot / "config.json").write_text((DATA / "llama-3-8b.config.json").read_text())
    arch = load_model(snapshot)
    assert arch.name == "Meta-Llama-3-8B"
    assert arch.layers == load_model("llama-3-8b").layers
    assert load_model(str(snapshot / "config.json")).layers == arch.layers

    entry = model_entry("qwen3-32b")
    (tmp_path / "my-qwen.yaml").write_text(yaml.safe_dump(dict(entry, name="my-qwen")))
    mine = load_model(tmp_path / "my-qwen.yaml")
    assert mine.name == "my-qwen" and mine.total_params == entry["total_params"]


def test_unknown_model_names_the_closest_ones():
    with pytest.raises(CatalogError, match=r"model 'llama-3-8c' is unknown; did you mean: llama-3-8b.*fleetsim models"):
        load_model("llama-3-8c")
    with pytest.raises(CatalogError, match="unknown"):
        model_entry("foo")
    with pytest.raises(CatalogError, match="no such file"):
        load_model(Path("/nonexistent/config.json"))


def test_model_entry_is_a_copy():
    model_entry("llama-3-8b")["hf_config"]["num_hidden_layers"] = 1
    assert load_model("llama-3-8b").num_layers == 32
    clear_cache()
    assert load_model("llama-3-8b").num_layers == 32


# ------------------------------------------------------------------ the config reader


LLAMA2_7B = {  # huggingface.co/meta-llama/Llama-2-7b-hf config.json: no head_dim, MHA
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "vocab_size": 32000,
}


def test_missing_kv_heads_means_mha_and_missing_head_dim_means_hidden_over_heads():
    config = {k: v for k, v in LLAMA2_7B.items() if k != "num_key_value_heads"}
    (attn,) = architecture_from_hf_config(config, name="llama-2-7b").layers
    assert (attn.q_heads, attn.kv_heads, attn.head_dim) == (32, 32, 128)
    # Llama 2 paper: 7B. The estimate from this config: 6.74B.
    assert architecture_from_hf_config(config, name="x").total_params == 6_738_415_616


def test_model_type_can_come_from_architectures():
    config = {k: v for k, v in LLAMA2_7B.items() if k != "model_type"}
    assert architecture_from_hf_config(config, name="x").num_layers == 32


def test_layer_types_decide_which_layers_slide():
    config = dict(
        LLAMA2_7B,
        num_hidden_layers=4,
        sliding_window=512,
        layer_types=["sliding_attention", "full_attention", "full_attention", "sliding_attention"],
    )
    arch = architecture_from_hf_config(config, name="x")
    assert [(g.count, g.window_tokens) for g in arch.layers] == [(1, 512), (2, None), (1, 512)]


def test_qwen_use_sliding_window_false_means_no_window():
    # Qwen2-7B config.json carries sliding_window 131072 with use_sliding_window false.
    config = dict(LLAMA2_7B, model_type="qwen2", sliding_window=131072, use_sliding_window=False)
    (attn,) = architecture_from_hf_config(config, name="x").layers
    assert attn.window_tokens is None


def test_gemma_3_text_config_alone_reads_the_same_as_the_wrapper():
    text = dict(model_entry("gemma-3-27b")["hf_config"]["text_config"])
    assert architecture_from_hf_config(text, name="x").layers == load_model("gemma-3-27b").layers


def test_mamba_2_state_layout():
    config = {  # state-spaces/mamba2-2.7b sizes (Mamba-2 paper): 64 layers, d_model 2560
        "model_type": "mamba2",
        "hidden_size": 2560,
        "num_hidden_layers": 64,
        "vocab_size": 50288,
        "expand": 2,
        "num_heads": 80,
        "head_dim": 64,
        "n_groups": 1,
        "state_size": 128,
        "conv_kernel": 4,
        "tie_word_embeddings": True,
    }
    arch = architecture_from_hf_config(config, name="mamba2-2.7b")
    (ssm,) = arch.layers
    assert (ssm.version, ssm.d_inner, ssm.d_state, ssm.n_heads, ssm.n_groups) == (2, 5120, 128, 80, 1)
    assert arch.total_params == pytest.approx(2.7e9, rel=0.03)  # Mamba-2 paper: 2.7B


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 4000, "num_attention_heads": 48, "num_key_value_heads": 8}, "hidden_size"),
        ({"num_key_value_heads": 5}, "num_key_value_heads"),
        ({"num_hidden_layers": None}, "num_hidden_layers"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"num_attention_heads": "32"}, "num_attention_heads"),
        ({"model_type": "bert"}, "model_type"),
        ({"sliding_window": 512, "layer_types": ["full_attention"] * 3}, "layer_types"),
        ({"sliding_window": 512, "layer_types": ["global"] * 32}, "layer_types[0]"),
        ({"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 9}, "num_experts_per_tok"),
    ],
)
def test_contradictory_config_raises_one_line_naming_the_field(change, field):
    config = {k: v for k, v in dict(LLAMA2_7B, **change).items() if v is not None}
    with pytest.raises(CatalogError) as caught:
        architecture_from_hf_config(config, name="bad")
    message = str(caught.value)
    assert f"'{field}'" in message
    assert "\n" not in message
    assert isinstance(caught.value, FleetsimError)


def test_error_names_the_value_and_what_would_be_valid():
    with pytest.raises(CatalogError, match=r"'num_key_value_heads' = 5 .*32.*\[1, 2, 4, 8, 16, 32\]"):
        architecture_from_hf_config(dict(LLAMA2_7B, num_key_value_heads=5), name="bad")
    with pytest.raises(CatalogError, match=r"'hidden_size' = 4000 .* 48 .*head_dim"):
        architecture_from_hf_config(
            dict(LLAMA2_7B, hidden_size=4000, num_attention_heads=48, num_key_value_heads=8), name="bad"
        )


def test_bad_files_raise_catalog_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_model(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CatalogError, match="no config.json"):
        load_model(empty)
    with pytest.raises(CatalogError, match="hf_config"):
        (tmp_path / "x.yaml").write_text("name: x\n")
        load_model(tmp_path / "x.yaml")
    with pytest.raises(CatalogError, match="JSON object"):
        architecture_from_hf_config([1, 2], name="x")


# --------------------------------------------------------------------------------- GPUs


def test_catalog_lists_every_required_gpu():
    assert REQUIRED_GPUS <= set(gpu_names())


@pytest.mark.parametrize("name", sorted(REQUIRED_GPUS))
def test_every_gpu_loads_with_a_bf16_peak_and_sources(name):
    gpu = load_gpu(name)
    assert gpu.name == name
    assert gpu.peak_flops_per_s["bf16"] > 0
    assert gpu.sources.get("memory_bytes")
    # every figure that is set carries a source, and every source names a real field
    for field, value in gpu.model_dump().items():
        if field not in ("name", "vendor", "description", "sources") and value is not None:
            assert gpu.sources.get(field), f"{name}: no source for {field}"
    assert set(gpu.sources) <= set(GpuSpec.model_fields)
    assert 16e9 < gpu.memory_bytes < 300e9
    # dense tensor peaks: fp8 (where present) doubles bf16 on every part listed (the L40S
    # datasheet rounds: 362.05 vs 733)
    if "fp8" in gpu.peak_flops_per_s:
        assert gpu.peak_flops_per_s["fp8"] == pytest.approx(2 * gpu.peak_flops_per_s["bf16"], rel=0.015)


def test_h100_figures_are_the_datasheet_dense_values():
    sxm, pcie = load_gpu("h100-sxm"), load_gpu("h100-pcie")
    # nvidia-smi reports 81,559 MiB on both H100 80GB parts.
    assert sxm.memory_bytes == pcie.memory_bytes == 81_559 * 2**20
    # H100 datasheet: SXM BF16 1,979 / PCIe 1,513 TFLOPS with sparsity; dense is half.
    assert sxm.peak_flops("bf16") == pytest.approx(1979e12 / 2, rel=1e-3)
    assert pcie.peak_flops("bf16") == pytest.approx(1513e12 / 2, rel=1e-3)
    assert pcie.peak_flops("fp8") == pytest.approx(3026e12 / 2, rel=1e-3)
    assert pcie.hbm_bandwidth_bytes_per_s == 2.0e12
    # NVLink 4: 900 GB/s bidirectional per GPU; PCIe Gen5 x16: 128 GB/s bidirectional.
    assert sxm.interconnect_bandwidth_bytes_per_s == 450e9
    assert pcie.interconnect_bandwidth_bytes_per_s == 64e9
    assert load_gpu("l40s").interconnect_bandwidth_bytes_per_s == 32e9  # PCIe Gen4 x16


def test_a100_has_no_fp8_and_falls_back_to_bf16():
    a100 = load_gpu("a100-80gb")
    assert "fp8" not in a100.peak_flops_per_s
    assert a100.peak_flops("fp8") == a100.peak_flops("bf16") == 312e12  # A100 datasheet, dense


def test_gpu_entries_read_as_numbers_not_strings():
    for name in gpu_names():
        entry = gpu_entry(name)
        assert isinstance(entry["hbm_bandwidth_bytes_per_s"], (int, float))
        assert all(isinstance(v, (int, float)) for v in entry["peak_flops_per_s"].values())


def test_unknown_gpu_and_bad_gpu_file(tmp_path):
    with pytest.raises(CatalogError, match=r"gpu 'h900' is unknown; did you mean: .*h100-sxm.*fleetsim gpus"):
        load_gpu("h900")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(gpu_entry("h100-sxm"), memory_bytes=-1)))
    with pytest.raises(CatalogError, match="memory_bytes"):
        load_gpu(bad)
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(dict(gpu_entry("h100-sxm"), name="my-h100", tdp_w=500)))
    assert load_gpu(custom).tdp_w == 500


# --------------------------------------------------------------------------------- files that are not what they claim


def _one_line(call) -> str:
    with pytest.raises(CatalogError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def _not_regular_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """A device, a FIFO (opening it for reading would block), a folder named like a file, a file
    over the size cap (sparse: no disk used) and one that is not UTF-8."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: h100-\xfc\n".encode("latin-1"))
    return {
        "device": (Path("/dev/zero"), "is not a regular file"),
        "fifo": (fifo, "is not a regular file"),
        "folder": (folder, "is a folder"),
        "huge": (huge, f"valid: a file of at most {MAX_FILE_BYTES:,} bytes"),
        "not-utf8": (latin1, "is not UTF-8 text"),
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs a POSIX system")
@pytest.mark.parametrize("case", ["device", "fifo", "folder", "huge", "not-utf8"])
def test_a_gpu_path_that_is_not_a_yaml_file_fails_in_one_line_without_reading_it(tmp_path, case):
    path, says = _not_regular_files(tmp_path)[case]
    assert says in _one_line(lambda: load_gpu(path))
    assert says in _one_line(lambda: load_gpu(str(path)))  # as `fleet.gpu: /dev/zero` names it


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs a POSIX system")
@pytest.mark.parametrize("case", ["device", "fifo", "huge", "not-utf8"])
def test_a_model_path_that_is_not_a_config_fails_in_one_line_without_reading_it(tmp_path, case):
    path, says = _not_regular_files(tmp_path)[case]
    assert says in _one_line(lambda: load_model(path))
    json_twin = path.with_suffix(".json") if case != "device" else path
    if json_twin != path:
        path.rename(json_twin)
    assert says in _one_line(lambda: load_model(json_twin))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a POSIX system")
def test_a_folder_whose_config_json_is_a_fifo_fails_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    assert "is not a regular file" in _one_line(lambda: load_model(tmp_path))


def test_catalog_yaml_files_go_through_the_bounded_reader(tmp_path):
    """Alias bombs, deep nesting and non-mappings: one line, nothing of the file echoed."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"l{i}: &l{i} [{', '.join(['*a' if i == 0 else f'*l{i - 1}'] * 9)}]\n" for i in range(8))
    )
    assert "alias bomb" in _one_line(lambda: load_gpu(bomb))
    assert "alias bomb" in _one_line(lambda: load_model(bomb))
    deep = tmp_path / "deep.yaml"
    deep.write_text("hf_config: " + "[" * 200 + "]" * 200 + "\n")
    assert "nesting deeper than 64" in _one_line(lambda: load_model(deep))
    listing = tmp_path / "list.yaml"
    listing.write_text("- secret-line-one\n- secret-line-two\n")
    message = _one_line(lambda: load_gpu(listing))
    assert "must be a YAML mapping" in message and "secret" not in message


def test_config_json_with_junk_fails_in_one_line(tmp_path):
    config = tmp_path / "config.json"
    config.write_bytes(b"\xff\xfe{}")
    assert "is not UTF-8 text" in _one_line(lambda: load_model(config))
    config.write_bytes(b"[" * 100_000)
    assert "nesting deeper than 64" in _one_line(lambda: load_model(config))
    config.write_text('{"num_hidden_layers": ' + "9" * 5000 + "}")
    assert "a value cannot be read" in _one_line(lambda: load_model(config))
    config.write_text(json.dumps(dict(LLAMA2_7B, num_hidden_layers=10**29)))
    assert "'num_hidden_layers' = 100000000000000000000000000000 is not valid" in _one_line(lambda: load_model(config))


def test_gpu_yaml_with_hostile_fields_fails_in_one_line(tmp_path):
    gpu = tmp_path / "gpu.yaml"
    for change in ({"x" * 300: 1}, {"memory_bytes": "y" * 5000}, {"peak_flops_per_s": {"bf16": [1] * 1000}}, {1: 2}):
        gpu.write_text(yaml.safe_dump({**gpu_entry("h100-sxm"), **change}))
        message = _one_line(lambda: load_gpu(gpu))
        assert "x" * 100 not in message and "y" * 100 not in message


def test_names_and_paths_with_control_characters_are_shown_escaped(tmp_path):
    for typed in (
        "bad\nname",
        "\x1b[31mred",
        "x\x00y.yaml",
        "~nosuchuser-fleetsim/x.yaml",
        "a" * 5000,
        "/" + "a" * 5000,
    ):
        for load in (load_model, load_gpu):
            message = _one_line(lambda load=load, typed=typed: load(typed))
            assert message.isprintable(), message

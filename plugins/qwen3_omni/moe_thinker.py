"""Qwen3-Omni's Thinker text model: a decoder LM whose MLPs are sparse mixtures of experts.

Following transformers' ``Qwen3OmniMoeThinkerTextModel``: grouped-query attention without
q/k/v bias and with RMSNorm on each head's queries and keys; in each layer a
``SparseMoe`` (top-k router, ``norm_topk_prob``) unless ``mlp_only_layers`` lists it (a
dense SwiGLU of ``ffn_dim``); the router's load-balancing loss returned as ``router``
(weighted by ``loss.weights.router``, default ``router_aux_coef``); deepstack: the vision
encoder's inner levels (``SideInputs``) added to the media tokens' states after the first
layers. Rotary positions come from the position plugin (``position.mrope_interleaved=true``
for the release's interleaved M-RoPE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from omnitrain.api import (
    Attention,
    KVCache,
    PositionScheme,
    RMSNorm,
    SideInputs,
    SwiGLU,
    Thinker,
    ThinkerOutput,
    register,
)
from omnitrain.nn.varlen import DocAttention, DocRuns
from omnitrain_plugins.qwen3_omni.moe import SparseMoe, balance_loss


@dataclass
class Qwen3MoeThinkerConfig:
    hidden_size: int = 128
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    head_dim: int | None = None  # None: hidden_size // heads (Qwen3-Omni-30B sets 128; 2048 / 32 is 64)
    ffn_dim: int = 384  # the dense layers' SwiGLU width (mlp_only_layers)
    moe_ffn_dim: int = 64  # each expert's SwiGLU width
    experts: int = 4
    top_k: int = 2
    norm_topk_prob: bool = True  # renormalise the chosen experts' probabilities to sum to 1
    decoder_sparse_step: int = 1  # a MoE layer every this many layers
    mlp_only_layers: list[int] = field(default_factory=list)  # layers with a dense MLP instead
    router_aux_coef: float = 0.001  # the load-balancing loss's default weight (loss.weights.router)
    experts_impl: str = "auto"  # grouped (torch._grouped_mm) | loop | auto: grouped where the shapes allow
    rms_eps: float = 1e-6
    tie_embeddings: bool = False
    attention: str = "auto"  # auto: varlen FlashAttention on CUDA, dense block mask elsewhere
    activation_checkpointing: bool = False


class MoeBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)); x + mlp(norm(x)), the MLP sparse or dense."""

    def __init__(self, cfg: Qwen3MoeThinkerConfig, head_dim: int, sparse: bool, grouped: bool) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.self_attn = Attention(cfg.hidden_size, cfg.heads, cfg.kv_heads, head_dim=head_dim, qk_norm_eps=cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.sparse = sparse
        self.mlp = (SparseMoe(cfg.hidden_size, cfg.moe_ffn_dim, cfg.experts, cfg.top_k, cfg.norm_topk_prob, grouped)
                    if sparse else SwiGLU(cfg.hidden_size, cfg.ffn_dim))

    def forward(self, x: Tensor, mask, rotary, cache: KVCache | None = None,
                layer: int = 0) -> tuple[Tensor, Tensor | None]:
        x = x + self.self_attn(self.input_layernorm(x), mask, rotary, cache, layer)
        if not self.sparse:
            return x + self.mlp(self.post_attention_layernorm(x)), None
        out, router_logits = self.mlp(self.post_attention_layernorm(x))
        return x + out, router_logits


def grouped_fits(cfg: Qwen3MoeThinkerConfig) -> bool:
    """torch._grouped_mm needs rows of a multiple of 16 bytes (4 fp32 or 8 bf16 values)."""
    return hasattr(torch, "_grouped_mm") and cfg.hidden_size % 8 == 0 and cfg.moe_ffn_dim % 8 == 0


@register("thinker", "qwen3_moe", config=Qwen3MoeThinkerConfig)
class Qwen3MoeThinker(Thinker):
    """Qwen3-Omni's MoE decoder (q/k norm, top-k experts, load balancing, deepstack)."""

    block_types = (MoeBlock,)
    takes_doc_runs = True
    takes_side_inputs = True
    takes_output_layers = True  # the Talker reads a middle layer's states (accept_hidden_layer)
    batched_step = True

    @classmethod
    def named_losses(cls, cfg: Qwen3MoeThinkerConfig) -> dict[str, float]:
        return {"router": cfg.router_aux_coef}

    def __init__(self, cfg: Qwen3MoeThinkerConfig, vocab_size: int, position: PositionScheme) -> None:
        super().__init__()
        if cfg.experts_impl not in ("auto", "grouped", "loop"):
            raise ValueError(f"thinker.experts_impl must be auto, grouped or loop, got {cfg.experts_impl!r}")
        if not 1 <= cfg.top_k <= cfg.experts:
            raise ValueError(f"thinker.top_k={cfg.top_k} must be between 1 and thinker.experts={cfg.experts}")
        if cfg.experts_impl == "grouped" and not grouped_fits(cfg):
            raise ValueError("thinker.experts_impl=grouped needs torch._grouped_mm and hidden_size and moe_ffn_dim "
                             "multiples of 8; use experts_impl=loop")
        self.cfg = cfg
        self.hidden_size = cfg.hidden_size
        self.head_dim = cfg.head_dim or cfg.hidden_size // cfg.heads
        position.check_head_dim(self.head_dim)
        self.position = position
        grouped = cfg.experts_impl == "grouped" or (cfg.experts_impl == "auto" and grouped_fits(cfg))
        self.embed_tokens = nn.Embedding(vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            MoeBlock(cfg, self.head_dim, cfg.experts > 0 and i not in cfg.mlp_only_layers
                     and (i + 1) % cfg.decoder_sparse_step == 0, grouped)
            for i in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.embed_tokens(input_ids)

    def _layers(self, x: Tensor, mask, rotary, side: SideInputs | None, keep: Tensor | None,
                cache: KVCache | None = None, output_layers: tuple[int, ...] = ()) -> ThinkerOutput:
        router_logits = []
        states = {0: x} if 0 in output_layers else {}
        for i, layer in enumerate(self.layers):
            if cache is not None:
                x, logits = layer(x, mask, rotary, cache, i)
            elif self.cfg.activation_checkpointing and torch.is_grad_enabled():
                x, logits = checkpoint(layer, x, mask, rotary, use_reentrant=False)
            else:
                x, logits = layer(x, mask, rotary)
            if logits is not None:
                router_logits.append(logits)
            if i + 1 in output_layers:  # as transformers records a layer's output: before deepstack
                states[i + 1] = x
            if side is not None and i < len(side.features) and side.mask.shape == x.shape[:2]:
                # deepstack: level i of the vision encoder joins its tokens after layer i
                x = x.masked_scatter(side.mask[..., None], x[side.mask] + side.features[i].to(x.dtype))
        aux = {"router": balance_loss(router_logits, self.cfg.top_k, keep)} if router_logits and cache is None else {}
        return ThinkerOutput(self.norm(x), states, aux)

    def forward(self, inputs_embeds: Tensor, position_ids: Tensor, doc_ids: Tensor, doc_runs: DocRuns | None = None,
                side_inputs: SideInputs | None = None, output_layers: tuple[int, ...] = ()) -> ThinkerOutput:
        rotary = self.position.rotary(position_ids, self.head_dim)
        mask = DocAttention.build(doc_ids, self.cfg.attention, doc_runs)
        return self._layers(inputs_embeds, mask, rotary, side_inputs, doc_ids != 0, output_layers=output_layers)

    def step(self, inputs_embeds: Tensor, position_ids: Tensor, cache: KVCache,
             side_inputs: SideInputs | None = None, output_layers: tuple[int, ...] = ()) -> ThinkerOutput:
        rotary = self.position.rotary(position_ids, self.head_dim)
        mask = cache.step_mask(inputs_embeds.shape[1], inputs_embeds.device)
        return self._layers(inputs_embeds, mask, rotary, side_inputs, None, cache, output_layers)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)

    def head_linear(self) -> nn.Linear:
        return self.lm_head

    def recomputes_activations(self) -> bool:
        return self.cfg.activation_checkpointing

    def active_share(self, name: str) -> float:
        """top_k / experts for an expert weight of a MoE layer (and its LoRA adapters), 1 elsewhere."""
        parts = name.split(".")
        if len(parts) > 4 and parts[0] == "layers" and parts[2:4] == ["mlp", "experts"]:
            return self.cfg.top_k / self.cfg.experts
        return 1.0

    def active_params(self) -> int:
        """Every matmul weight but the experts' share no position runs: each MoE layer runs
        top_k of its experts per position (the router and attention always)."""
        def count(p: nn.Parameter) -> int:
            return int(getattr(p, "ds_numel", 0) or p.numel())  # a ZeRO-3 placeholder is empty

        seen, active = set(), 0.0
        for module_name, module in self.named_modules():
            for p_name, p in module.named_parameters(recurse=False):
                if id(p) not in seen:  # a tied head: counted as the table it is (no matmul)
                    seen.add(id(p))
                    matmul = not isinstance(module, nn.Embedding)
                    active += count(p) * self.active_share(f"{module_name}.{p_name}") if matmul else 0
        return int(active)

"""Memory plan: will this recipe fit on N GPUs, and under which strategy?

Model states follow the mixed-precision Adam model of the ZeRO paper (Rajbhandari et
al. 2020): per trainable parameter 2 bytes of 16-bit weight, 2 of 16-bit gradient and
12 of fp32 master weight + Adam moments (16 in all); a frozen parameter keeps its
16-bit weight only. Each strategy shards them its own way and says how in its
``state_rows`` (DDP: 2(T+F) + 14T per GPU; ZeRO-1/2/3, offload and FSDP divide parts of
it by N and add the buffers their engines allocate). Activations come from what the batches hold
(``omnitrain.training.performance.activations``: the token budget, batches drawn from the shards,
and the measured cost per matmul width), and the plan says which source it used.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnitrain.config.typed import RunConfig
from omnitrain.model.meta import meta_model
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import registered_strategies, strategy_for
from omnitrain.slots import MODEL_SLOTS
from omnitrain.training.performance.activations import BatchShape, activation_bytes, batch_shape
from omnitrain.training.performance.flops import gradient_slots
from omnitrain.training.performance.model_stats import ModelStats, model_stats

GiB = 2**30


@dataclass
class Plan:
    stats: ModelStats
    gpus: int
    states: dict[str, float]  # bytes per GPU for model states + engine buffers, by strategy row
    host: dict[str, float]  # bytes of host memory per node, where a strategy offloads
    activations: float  # bytes per GPU, no recomputation
    activations_recomputed: float
    recompute: bool  # the configured strategy recomputes each block
    vocab: int
    shape: BatchShape  # positions per slot of one micro-batch, and where they came from
    compute: str  # how the step computes: 32 | bf16-mixed | bf16


def model_state_bytes(stats: ModelStats, gpus: int, per_node: int, cfg: RunConfig
                      ) -> tuple[dict[str, float], dict[str, float]]:
    """Every registered strategy's rows (its own memory model); the configured strategy's
    rows use its options (bucket sizes), the others their defaults."""
    configured = strategy_for(cfg)
    states, host = {}, {}
    for cls in registered_strategies().values():
        options = configured.options if isinstance(configured, cls) else None
        for row, (gpu, host_bytes) in cls.state_rows(stats, gpus, per_node, options).items():
            states.setdefault(row, gpu)
            if host_bytes:
                host.setdefault(row, host_bytes)
    return states, host


def make_plan(cfg: RunConfig, gpus: int, per_node: int | None = None, shape: BatchShape | None = None,
              model: OmniModel | None = None) -> Plan:
    """``model``: this config's model on the meta device, if already built."""
    model = model or meta_model(cfg)
    stats = model_stats(model, cfg)
    states, host = model_state_bytes(stats, gpus, per_node or gpus, cfg)
    shape = shape or batch_shape(cfg, model)
    strategy = strategy_for(cfg)
    kind, grads = strategy.compute_kind(), gradient_slots(cfg)
    # slots that recompute their own blocks whatever the strategy (thinker.activation_checkpointing)
    own = {slot for slot in MODEL_SLOTS if getattr(model, slot).recomputes_activations()}
    full = activation_bytes(model, shape, kind, grads, recompute=own)
    recomputed = activation_bytes(model, shape, kind, grads, recompute=True)
    recompute = bool(getattr(strategy, "recomputes", False))
    return Plan(stats, gpus, states, host, full, recomputed, recompute, int(model.tokenizer.vocab_size),
                shape, kind)


def per_gpu_total(plan: Plan, strategy: str) -> float:
    """Bytes per GPU for ``strategy`` (a row of ``states``) with this config's activations."""
    return plan.states[strategy] + (plan.activations_recomputed if plan.recompute else plan.activations)


def layout(cfg: RunConfig, gpus: int | None = None, nodes: int | None = None) -> tuple[int, int]:
    """(GPUs per node, nodes) to plan for: the arguments, else an int ``trainer.devices``
    with ``trainer.num_nodes`` (a launch's own layout), else the config's ``plan`` section."""
    devices = cfg.trainer.devices
    if isinstance(devices, int) and devices > 0:
        per_node, n = devices, int(cfg.trainer.num_nodes or 1)
    else:
        per_node, n = cfg.plan.gpus_per_node, cfg.plan.nodes
    return gpus or per_node, nodes or n


def chosen(cfg: RunConfig) -> str:
    """The plan row of the configured strategy."""
    return strategy_for(cfg).plan_row


def deepspeed_zero3_estimate(stats: ModelStats, gpus_per_node: int, nodes: int) -> float:
    """DeepSpeed's own ZeRO-3 estimate (no offload, zero.Init) for the same counts, per GPU."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        stats.params, stats.largest_layer, gpus_per_node, nodes, cpu_offload=False,
        cpu_offload_params=False, zero_init=True)
    return float(gpu)


def format_plan(plan: Plan, cfg: RunConfig, gpu_memory: float) -> tuple[str, list[str]]:
    """The printed plan and its warnings (empty when the configured strategy fits)."""
    lines = [f"{'slot':<16}{'parameters':>16}{'trainable':>16}"]
    for slot, s in plan.stats.slots.items():
        lines.append(f"{slot:<16}{s.params:>16,}{s.trainable:>16,}")
    lines.append(f"{'total':<16}{plan.stats.params:>16,}{plan.stats.trainable:>16,}")
    lines.append(f"largest layer: {plan.stats.largest_layer:,} parameters (ZeRO-3 gathers it whole)")
    lines.append("")
    act = plan.activations_recomputed if plan.recompute else plan.activations
    slots = ", ".join(f"{s} {n:,}" for s, n in plan.shape.positions.items())
    lines.append(f"one micro-batch ({plan.shape.source}): positions per slot {slots}")
    lines.append(f"activations per GPU ({plan.compute}, vocab {plan.vocab:,}): "
                 f"{plan.activations / GiB:.1f} GiB, {plan.activations_recomputed / GiB:.1f} GiB with "
                 f"per-block recomputation{' (this config recomputes)' if plan.recompute else ''}")
    lines.append(f"per GPU on {plan.gpus} GPU{'s' if plan.gpus != 1 else ''} (model states + engine buffers + activations), "
                 f"GPU memory {gpu_memory / GiB:.0f} GiB:")
    mine = chosen(cfg)
    warnings = []
    for name in plan.states:
        total = plan.states[name] + act
        fits = "fits" if total <= gpu_memory else "DOES NOT FIT"
        mark = "  <- strategy of this config" if name == mine else ""
        extra = f", host {plan.host[name] / GiB:.1f} GiB/node" if name in plan.host else ""
        lines.append(f"  {name:<14}{plan.states[name] / GiB:>9.1f} + {act / GiB:.1f} = "
                     f"{total / GiB:>7.1f} GiB  {fits}{extra}{mark}")
    total = plan.states[mine] + act
    if total > gpu_memory:
        fitting = [n for n in plan.states if plan.states[n] + act <= gpu_memory]
        hint = f"strategies that fit: {fitting}" if fitting else "no strategy fits"
        if not plan.recompute and plan.states[mine] + plan.activations_recomputed <= gpu_memory:
            hint += "; with activation recomputation the configured one would"
        warnings.append(
            f"WARNING: this config ({mine}) needs about {total / GiB:.1f} GiB per GPU on {plan.gpus} "
            f"GPUs but a GPU has {gpu_memory / GiB:.0f} GiB; {hint}; or lower data.batch_size / "
            "data.max_tokens (data.rows_per_batch / data.pack_length with token batching), or use more GPUs"
        )
    return "\n".join(lines), warnings

"""The Qwen2.5-Omni family: its Thinker (Qwen2), encoders, TMRoPE, Talker, token2wav DiT, BigVGAN, and
the weight conversion from transformers' checkpoints."""

"""The Qwen3-Omni family (transformers ``qwen3_omni_moe``): so far the Thinker's text model
(``qwen3_moe``: mixture-of-experts MLPs, q/k norm, deepstack side inputs)."""

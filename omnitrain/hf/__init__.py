"""Hugging Face folders in and out: ``omnitrain import-hf`` and ``omnitrain export --format hf``.

The core streams tensors between sharded safetensors and bundles; what a released model's
names, shapes and config mean is a plugin's business (an ``HFFormat`` registered under the
folder's ``model_type``, e.g. Qwen2.5-Omni's, in the qwen_omni plugins' ``hf_format`` module).
"""

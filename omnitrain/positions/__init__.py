"""Position ids: sample layouts, per-piece id rules, the multimodal rotary base, ids from token ids."""

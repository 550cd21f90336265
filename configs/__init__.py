"""Hydra config groups shipped with omnitrain (installed as ``omnitrain_configs``)."""

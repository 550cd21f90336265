"""Ready-to-launch experiments (installed as ``omnitrain_recipes``)."""

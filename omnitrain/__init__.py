"""omnitrain: train Thinker-Talker speech models with swappable plugins."""

__version__ = "0.1.0"

"""The training stages: each task's LightningModule on a shared base, and how its losses are weighted."""

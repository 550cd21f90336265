"""The performance model: FLOPs, activation and peak-memory estimates, the plan, and the throughput callback."""

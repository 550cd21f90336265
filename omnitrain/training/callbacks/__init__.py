"""Lightning callbacks of a run: checkpoints, non-finite steps, preemption, gradient and progress tracking, logs."""

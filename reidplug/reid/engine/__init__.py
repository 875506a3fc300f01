"""The training engine: a loop with hooks, trainers (fp32, amp), LR schedules, checkpoints."""

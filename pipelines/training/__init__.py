"""Training pieces shared by pretraining and finetuning: optimizer, steps, checkpoints."""

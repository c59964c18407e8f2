"""Learning: datasets, SFT, preference data, reward model, DPO, RL, online learner."""

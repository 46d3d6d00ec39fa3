"""lm-evaluation-harness task definitions (Open LLM Leaderboard v1) that read a local data folder."""

"""firefly-eval: CMMLU (OpenCompass), Open LLM Leaderboard (lm-eval), answer generation, tallies, reports."""

"""firefly-judge: blind pairwise human evaluation in the browser (Gradio), votes in SQLite."""

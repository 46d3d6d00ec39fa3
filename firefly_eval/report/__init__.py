"""`firefly-eval report`: collect result files, build tables and figures, write one markdown report."""

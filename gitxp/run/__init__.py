"""One run while it lives: begin, the Experiment handle, the wrapped process, hardware, finish."""

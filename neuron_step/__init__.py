"""The neuron step: ship generated programs to an executor host, run them sandboxed, bring back results."""

"""Runtime helpers shipped beside every generated program; standalone modules (stdlib, numpy, torch)."""

"""External systems Annapurna talks to: one interface per system, its backends beside it."""

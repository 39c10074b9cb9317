"""How a worker executes an agent: one module per runtime, plus the outbound HTTP chokepoint."""

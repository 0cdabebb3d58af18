"""Peerwatt meter oracle: signs meter readings with each meter's key (EIP-712) and pushes them
to the MeterOracle contract in packed batches."""

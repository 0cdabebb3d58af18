"""Peerwatt settlement (DESIGN.md sections 5, 6 and 8): the off-chain clearing engine (community
optimisation, pricing and profit-share rules) that posts results on chain, and the auditor's
ledger (event indexer, queries, API, audit). Built by the settlement and ledger issues; the
market and the meter oracle it settles against are in ``contracts/``."""

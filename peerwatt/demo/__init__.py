"""``peerwatt demo``: a community modelled on the FleXunity Corby pilot trades, meters, settles
and audits one day on a local chain, under each settlement mode, and reports what it saved."""

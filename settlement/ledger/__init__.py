"""The auditor's ledger (DESIGN.md section 8): every event of the community's contracts indexed
from the chain into SQLite (:mod:`.indexer`, :mod:`.store`), typed rows derived from them
(:mod:`.records`) and pandas queries over them (:mod:`.queries`)."""

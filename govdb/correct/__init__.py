"""After promotion: conflicts (比对) resolved by their owners, wrong promotions reverted, wrong
merges split. Each is an authorised, audited, checked change of master with lineage."""

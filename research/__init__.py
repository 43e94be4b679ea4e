"""Research analytics on the warehouse: point-in-time labels, purged and embargoed splits,
walk-forward training, performance and factor evaluation, tearsheets.

Pure computations over frames that ``alpha.history`` returns; no experiment bookkeeping
(that is :mod:`lifecycle`)."""

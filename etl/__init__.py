"""ETL for Alpha Warehouse: adapters land raw data, validation splits good rows
from quarantined ones, and pure factor functions turn silver bars into gold
features. Nothing here imports Feast; the feature repo and the SDK do."""

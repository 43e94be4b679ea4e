-- Databases of the stack, created on the first start of the postgres container:
-- Prefect's server database, Feast's SQL registry, and the warehouse state
-- (watermarks and the live loop's ledger).
CREATE DATABASE prefect;
CREATE DATABASE feast_registry;
CREATE DATABASE alpha_state;

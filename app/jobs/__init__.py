"""Jobs on the data engine: a table, claimed by workers under a lease (docs/ARCHITECTURE.md)."""

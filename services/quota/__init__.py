"""The quota service: the ledger of record for purchased, held and consumed e-meterai units."""

"""Generated from protos/emeterai/v1 by scripts/gen_protos.py. Do not edit."""

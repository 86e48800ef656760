"""The e-meterai services: auth, quota, signer, gateway, and their shared plumbing."""

"""Auth service: phone sign-in, tokens, distributor credentials, stamping PINs and the signing keys."""

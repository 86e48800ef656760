"""The signer service: puts a visible, signed e-meterai on PDFs and verifies signed PDFs."""

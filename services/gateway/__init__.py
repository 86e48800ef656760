"""The edge: HTTP and web page for retail users, gRPC for distributors; orchestrates stamping."""

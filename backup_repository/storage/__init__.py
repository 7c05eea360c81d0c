"""Blob storage on apache-libcloud: storage URLs (gocloud syntax) and the BlobStore used by the server."""

"""The document family: objects in S3 or a folder, one dynamic partition each; images among them."""

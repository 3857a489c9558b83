"""zhice read path: retrieval, answer composition and the HTTP service."""

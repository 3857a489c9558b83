"""zhice write path: load reports, chunk them, embed them and write the index."""

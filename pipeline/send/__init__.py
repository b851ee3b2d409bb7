"""Send: what each request carries for a chunk. Today the chunk's own bytes: its file, or a
stream-copied MP4 chunk built from the source as it is sent (`media.ChunkMedia`)."""

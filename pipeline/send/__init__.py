"""Send: what each request carries for a chunk: its bytes (its file, or a stream-copied MP4 chunk
built from the source as it is sent: `media.ChunkMedia`), a presigned URL of it staged in
S3-compatible storage (`stage`, `s3`), or the source's own URL (`senders`)."""

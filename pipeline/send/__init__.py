"""Send: what each request carries for a chunk. The strategy (`strategy`) decides what the chunks
are: the source's own, stream-copied (`media.ChunkMedia` builds them from the source as they
are sent), a proxy of the sampled frames (`compact`), or the sampled frames as JPEGs (`frames`);
`instants` numbers the sampled instants, `costs` prices each strategy for `plan`. The sender
(`senders`) decides how they travel: their bytes, a presigned URL of them staged in
S3-compatible storage (`stage`, `s3`), or the source's own URL."""

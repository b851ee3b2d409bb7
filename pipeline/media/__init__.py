"""Media plumbing under the stages: running ffmpeg, MP4 boxes read and written, frames decoded."""

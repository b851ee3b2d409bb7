"""`video-pipeline serve`: the embedded models behind Clarifai's own gRPC protocol."""

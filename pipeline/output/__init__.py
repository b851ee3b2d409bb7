"""What a run leaves behind: the timeline and its exports, written atomically."""

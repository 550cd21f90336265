"""Data-side feature extraction: Whisper log-mel, vision patches, the speech mel."""

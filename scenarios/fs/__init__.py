"""A FUSE passthrough filesystem that forgets what was not fsynced: power cuts and disk faults."""

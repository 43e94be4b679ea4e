"""The quality layer: ``bars`` (validation of raw bars), ``health`` (data health checks and report), ``errors``."""

"""mixups."""

"""The ports the use cases need. Adapters implement them; the composition root picks which."""

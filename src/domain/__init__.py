"""Pure models and rules of Bulwark. Imports nothing of frameworks, drivers or I/O."""

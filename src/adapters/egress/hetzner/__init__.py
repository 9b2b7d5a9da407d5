"""Hetzner Cloud Primary IPs as dedicated egress addresses (the `hetzner` egress provider)."""

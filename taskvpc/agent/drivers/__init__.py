"""Drivers: the only agent code that touches the host (netlink, namespaces; runtimes live beside)."""

"""Built-in components, registered through the same hooks as any plugin, and loaded first."""

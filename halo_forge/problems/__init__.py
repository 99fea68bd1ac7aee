"""Problem sets shipped with halo-forge (data files; loaded by halo_forge.data.registry)."""

from halo_forge.cli import entry

entry()

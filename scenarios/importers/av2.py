"""(being written) importer for av2."""

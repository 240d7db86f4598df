"""(being written) importer for interaction."""

"""(being written) importer for commonroad."""

"""(being written) importer for waymo_json."""

"""(being written) importer for scenarionet."""

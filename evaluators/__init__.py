"""drivetwin evaluators package."""

"""drivetwin sim package."""

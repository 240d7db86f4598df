"""drivetwin harness package."""

"""One readable module per agent."""
